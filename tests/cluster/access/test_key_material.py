"""Key material (issue 21), on the real apiserver: a client key given as client-key-data is
never written to a file, so it cannot outlive the process, even when a second signal ends it
with os._exit; and with no writable temp directory the tools still work."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hack.devenv import legacy
from hack.devenv.cluster import REPO, Cluster
from tests.support import chain


def inline(cluster: Cluster, path: Path, server: str | None = None) -> Path:
    """The admin kubeconfig with its CA, certificate and key as -data (as cloud consoles and
    `kubectl config view --flatten --raw` write them)."""
    config = json.loads(cluster.kubeconfig.read_text())
    entry, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    for holder, key in ((entry, "certificate-authority"), (user, "client-certificate"),
                        (user, "client-key")):  # fmt: skip
        holder[f"{key}-data"] = base64.b64encode(Path(holder.pop(key)).read_bytes()).decode()
    if server:
        entry["server"] = server
    path.write_text(json.dumps(config))
    return path


def key_text(cluster: Cluster) -> bytes:
    user = json.loads(cluster.kubeconfig.read_text())["users"][0]["user"]
    return Path(user["client-key"]).read_bytes()


def files_holding(folder: Path, secret: bytes) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_a_decoded_client_key_never_outlives_the_process_even_on_a_second_signal(
    cluster: Cluster, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kubeconfig = inline(cluster, tmp_path / "k", f"https://127.0.0.1:{port}")
    temp = tmp_path / "temp"
    temp.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "cleaner.status_cli", "--kubeconfig", str(kubeconfig),
         "--log-format", "text"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        env={**os.environ, "TMPDIR": str(temp), "CP_RETRY_SECONDS": "600",
             "PYTHONUNBUFFERED": "1", "HTTPS_PROXY": "", "https_proxy": ""},
    )  # fmt: skip
    assert process.stdout is not None
    output = ""
    deadline = time.monotonic() + 60
    while "retrying" not in output and time.monotonic() < deadline:
        output += process.stdout.readline()
    assert "retrying" in output, output  # the client is built: its key is loaded
    # Two signals at once: the second ends the process with os._exit, before any clean-up.
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=30)
    assert "again: exiting at once" in rest, output + rest
    assert files_holding(temp, key_text(cluster)) == [], output + rest
    assert list(temp.iterdir()) == []


def test_the_tools_work_without_a_writable_temp_directory(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(*_: object, **__: object) -> None:
        raise OSError(30, "Read-only file system")

    for name in ("mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryFile"):
        monkeypatch.setattr(tempfile, name, read_only)
    legacy.fresh_install(cluster)
    kubeconfig = inline(cluster, tmp_path / "k")
    for step in (chain.STATUS, chain.MIGRATOR):
        result = chain.run_in_process(step, kubeconfig)
        assert result.exit_code == 0, result.output
