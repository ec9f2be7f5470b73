"""Cluster access that cannot work, tried as people get it wrong, on the real apiserver: each
ends fast with the exit code that fits and a message naming what to fix, never a traceback.

A setting only a person can fix (a typo in an environment variable or a proxy URL, TLS files
that do not belong together, a user the kubeconfig does not have, an auth-provider we cannot
run) is exit 2 at once; a rejected credential or a proxy that does not answer is exit 1 naming
the cause; a signal ends a run that is waiting to retry at once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hack.devenv.cluster import REPO, Cluster
from tests.support import chain

DIRECT = {"HTTPS_PROXY": "", "https_proxy": "", "NO_PROXY": "", "no_proxy": ""}


def variant(cluster: Cluster, path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    config = json.loads(cluster.kubeconfig.read_text())
    change(config)
    path.write_text(json.dumps(config))
    return path


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def no_traceback(output: str) -> None:
    assert "Traceback" not in output and "unexpected failure" not in output, output


@pytest.mark.parametrize(
    ("variable", "value"),
    [("CP_RETRY_SECONDS", "abc"), ("CP_REQUEST_TIMEOUT", "0"), ("CP_REQUEST_TIMEOUT", "-3")],
)
def test_a_wrong_time_setting_is_exit_2_naming_it(
    cluster: Cluster, variable: str, value: str
) -> None:
    result = chain.run_in_process(chain.STATUS, cluster.kubeconfig, env={variable: value})
    assert result.exit_code == 2, result.output
    assert f"{variable}={value!r}" in result.output and "greater than 0" in result.output
    no_traceback(result.output)


@pytest.mark.parametrize(
    ("proxy", "says"),
    [("127.0.0.1:3128", "need http://HOST:PORT"), ("socks5://127.0.0.1:1080", "PySocks")],
)
def test_a_proxy_url_that_cannot_be_used_is_exit_2_naming_it(
    cluster: Cluster, proxy: str, says: str
) -> None:
    env = {**DIRECT, "HTTPS_PROXY": proxy, "https_proxy": proxy}
    result = chain.run_in_process(chain.MIGRATOR, cluster.kubeconfig, "--dry-run", env=env)
    assert result.exit_code == 2, result.output
    assert says in result.output and "the proxy" in result.output, result.output
    no_traceback(result.output)


def test_a_proxy_that_does_not_answer_is_named_as_the_cause(cluster: Cluster) -> None:
    proxy = f"http://user:secret-word@127.0.0.1:{closed_port()}"
    env = {**DIRECT, "HTTPS_PROXY": proxy, "https_proxy": proxy, "CP_RETRY_SECONDS": "2"}
    result = chain.run_in_process(chain.STATUS, cluster.kubeconfig, env=env)
    assert result.exit_code == 1, result.output
    assert "through the proxy http://127.0.0.1:" in result.output, result.output
    final = [line for line in result.output.splitlines() if "no answer from the apiserver" in line]
    assert final and "the proxy failed" in final[-1], result.output
    assert "secret-word" not in result.output


def test_tls_files_that_do_not_belong_together_are_exit_2_at_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    def wrong_key(config: dict[str, Any]) -> None:
        user = config["users"][0]["user"]
        user["client-key"] = str(Path(user["client-key"]).parent / "serving.key")

    started = time.monotonic()
    result = chain.run_in_process(chain.MIGRATOR, variant(cluster, tmp_path / "k", wrong_key))
    assert result.exit_code == 2, result.output
    assert "TLS files or data it names cannot be used" in result.output, result.output
    assert "KEY_VALUES_MISMATCH" in result.output
    assert "attempt 2" not in result.output and time.monotonic() - started < 10
    no_traceback(result.output)


def test_a_context_whose_user_is_missing_is_exit_2_not_anonymous(
    cluster: Cluster, tmp_path: Path
) -> None:
    def ghost(config: dict[str, Any]) -> None:
        config["contexts"][0]["context"]["user"] = "ghost"

    result = chain.run_in_process(chain.STATUS, variant(cluster, tmp_path / "k", ghost))
    assert result.exit_code == 2, result.output
    assert "user 'ghost' not found" in result.output, result.output


def test_a_rejected_token_names_the_user_and_what_to_check(
    cluster: Cluster, tmp_path: Path
) -> None:
    def bad_token(config: dict[str, Any]) -> None:
        config["users"][0]["user"] = {"token": "not-a-token-the-apiserver-knows"}

    result = chain.run_in_process(chain.MIGRATOR, variant(cluster, tmp_path / "k", bad_token))
    assert result.exit_code == 1, result.output
    assert "401" in result.output and "were rejected" in result.output, result.output
    assert "not-a-token-the-apiserver-knows" not in result.output


def test_an_auth_provider_we_cannot_run_is_exit_2_naming_the_exec_plugin(
    cluster: Cluster, tmp_path: Path
) -> None:
    def azure(config: dict[str, Any]) -> None:
        config["users"][0]["user"] = {"auth-provider": {"name": "azure", "config": {}}}

    result = chain.run_in_process(chain.STATUS, variant(cluster, tmp_path / "k", azure))
    assert result.exit_code == 2, result.output
    assert "auth-provider azure" in result.output and "kubelogin" in result.output
    no_traceback(result.output)


def test_a_signal_ends_a_run_that_waits_to_retry_at_once(cluster: Cluster, tmp_path: Path) -> None:
    def nowhere(config: dict[str, Any]) -> None:
        config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{closed_port()}"

    kubeconfig = variant(cluster, tmp_path / "k", nowhere)
    # cp-status reads in parallel threads: every one of them must stop retrying.
    process = subprocess.Popen(
        [sys.executable, "-m", "cleaner.status_cli", "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env={**os.environ, "CP_RETRY_SECONDS": "600", "PYTHONUNBUFFERED": "1"},
    )
    time.sleep(3)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert time.monotonic() - sent < 10, output
    assert process.returncode == 1, output
    assert output.count("interrupted by SIGTERM") == 1, output
    assert "cp-status only reads" in output and "again: exiting at once" not in output
