"""Kubeconfigs mean what kubectl makes of them (issue 21), on the real apiserver.

The identity is asserted as the apiserver saw it (a SelfSubjectReview, authentication.k8s.io/v1),
never from our log: a user defined in the second file of a KUBECONFIG list reads its relative
paths from its own directory, even when the first file's directory has files of the same name
(a decoy identity). Booleans are booleans; insecure-skip-tls-verify with a CA is refused; empty
files in KUBECONFIG are skipped and a directory is refused; without HOME the default file is
`.kube/config` under the working directory, as kubectl's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from common.cluster.client import Kube, resource_path
from common.cluster.kubeconfig import resolve
from common.errors import UsageError
from hack.devenv.cluster import REPO, Cluster
from tests.support import chain

REVIEW = resource_path("authentication.k8s.io", "v1", "selfsubjectreviews")
DIRECT = {"HTTPS_PROXY": "", "https_proxy": "", "NO_PROXY": "", "no_proxy": ""}


def who(kube: Kube) -> str:
    """The user name the apiserver authenticated this client as."""
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    answer = kube.request("POST", REVIEW, body=body, retry_safe=True)
    return str(answer["status"]["userInfo"]["username"])


def issue(cluster: Cluster, folder: Path, name: str, common_name: str) -> None:
    """`folder/name.crt` and `.key`: a client certificate for `common_name` from the
    cluster's CA (an EC key: quick to make)."""
    admin = json.loads(cluster.kubeconfig.read_text())
    pki = Path(admin["clusters"][0]["cluster"]["certificate-authority"]).parent
    folder.mkdir(parents=True, exist_ok=True)
    key, csr, crt = (folder / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
    subprocess.run(
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={common_name}"],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["openssl", "x509", "-req", "-in", csr, "-CA", pki / "ca.crt", "-CAkey", pki / "ca.key",
         "-CAcreateserial", "-CAserial", folder / f"{name}.srl", "-days", "1", "-out", crt],
        check=True, capture_output=True,
    )  # fmt: skip


def split_kubeconfig(
    cluster: Cluster, first: Path, second: Path, user: dict[str, Any]
) -> dict[str, str]:
    """KUBECONFIG=first:second; the cluster and context in `first`, the user in `second`."""
    admin = json.loads(cluster.kubeconfig.read_text())
    first.parent.mkdir(parents=True, exist_ok=True)
    second.parent.mkdir(parents=True, exist_ok=True)
    first.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": admin["clusters"],
                "contexts": [{"name": "x", "context": {"cluster": "test", "user": "jane"}}],
                "current-context": "x",
            }
        )
    )
    users = [{"name": "jane", "user": user}]
    second.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "users": users}))
    return {"KUBECONFIG": f"{first}:{second}", **DIRECT}


def test_a_users_relative_certificate_is_read_from_its_own_files_directory(
    cluster: Cluster, tmp_path: Path
) -> None:
    issue(cluster, tmp_path / "team", "client", "jane")
    issue(cluster, tmp_path / "mine", "client", "decoy")  # same names, next to the cluster's
    env = split_kubeconfig(
        cluster,
        tmp_path / "mine" / "config",
        tmp_path / "team" / "config",
        {"client-certificate": "client.crt", "client-key": "client.key"},
    )
    assert who(Kube(resolve(None, None, env))) == "jane"
    result = chain.run_in_process(chain.STATUS, cluster.kubeconfig, env=env)
    assert result.exit_code == 0, result.output


def test_a_users_relative_exec_command_is_run_from_its_own_files_directory(
    cluster: Cluster, tmp_path: Path
) -> None:
    from tests.cluster.access.test_cluster_access import EXEC_ACCOUNT, exec_account

    exec_account(cluster)
    token = cluster.mint_token(*EXEC_ACCOUNT)
    for folder, value in (("team", token), ("mine", "decoy-token-that-is-wrong")):
        plugin = tmp_path / folder / "bin" / "login"
        plugin.parent.mkdir(parents=True)
        credential = {
            "apiVersion": "client.authentication.k8s.io/v1",
            "kind": "ExecCredential",
            "status": {"token": value},
        }
        plugin.write_text(f"#!{sys.executable}\nprint({json.dumps(json.dumps(credential))})\n")
        plugin.chmod(0o755)
    exec_user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "./bin/login",
            "interactiveMode": "Never",
        }
    }
    env = split_kubeconfig(
        cluster, tmp_path / "mine" / "config", tmp_path / "team" / "config", exec_user
    )
    namespace, name = EXEC_ACCOUNT
    assert who(Kube(resolve(None, None, env))) == f"system:serviceaccount:{namespace}:{name}"


@pytest.mark.parametrize("value", ["false", "no", "0", "true"])
def test_a_boolean_written_as_a_string_is_exit_2_naming_the_file_and_key(
    cluster: Cluster, tmp_path: Path, value: str
) -> None:
    config = json.loads(cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = value
    kubeconfig = tmp_path / "k"
    kubeconfig.write_text(json.dumps(config))
    result = chain.run_in_process(chain.STATUS, kubeconfig)
    assert result.exit_code == 2, result.output
    assert str(kubeconfig) in result.output
    assert "clusters[name=test].cluster.insecure-skip-tls-verify" in result.output
    assert "not a boolean" in result.output and "Traceback" not in result.output


def test_a_real_boolean_false_keeps_verification_on(cluster: Cluster, tmp_path: Path) -> None:
    config = json.loads(cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = False
    kubeconfig = tmp_path / "k"
    kubeconfig.write_text(json.dumps(config))
    assert chain.run_in_process(chain.STATUS, kubeconfig).exit_code == 0


def test_insecure_skip_tls_verify_with_a_ca_is_exit_2(cluster: Cluster, tmp_path: Path) -> None:
    config = json.loads(cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = True
    kubeconfig = tmp_path / "k"
    kubeconfig.write_text(json.dumps(config))
    result = chain.run_in_process(chain.MIGRATOR, kubeconfig)
    assert result.exit_code == 2, result.output
    assert str(kubeconfig) in result.output and "certificate authority" in result.output


def test_an_empty_file_in_kubeconfig_is_skipped(cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("")
    (tmp_path / "blank").write_text("\n  \n")
    env = {"KUBECONFIG": f"{tmp_path / 'empty'}:{tmp_path / 'blank'}:{cluster.kubeconfig}"}
    result = chain.run_in_process(chain.STATUS, cluster.kubeconfig, env=env)
    assert result.exit_code == 0, result.output
    assert resolve(None, None, env).server == resolve(str(cluster.kubeconfig), None).server
    with pytest.raises(UsageError, match="only empty files"):
        resolve(None, None, {"KUBECONFIG": str(tmp_path / "empty")})


def test_a_directory_in_kubeconfig_is_exit_2(cluster: Cluster, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cleaner.status_cli import main

    env = {"KUBECONFIG": f"{tmp_path}:{cluster.kubeconfig}", "CP_KUBECONFIG": ""}
    result = CliRunner().invoke(main, ["--log-format", "text"], env=env)
    assert result.exit_code == 2, result.output
    assert f"KUBECONFIG names {tmp_path}, a directory" in result.output


def test_without_home_the_default_file_is_under_the_working_directory(
    cluster: Cluster, tmp_path: Path
) -> None:
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text(cluster.kubeconfig.read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "KUBECONFIG", "CP_KUBECONFIG")}
    status = subprocess.run(
        [sys.executable, "-c", "from cleaner.status_cli import main; main()", "--log-format",
         "text"],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert status.returncode == 0, status.stdout + status.stderr
    assert ".kube/config" in status.stderr


def test_without_home_or_a_default_file_in_cluster_is_tried(tmp_path: Path) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    cwd = Path.cwd()
    os.chdir(empty)
    try:
        with pytest.raises(Exception) as caught:  # no service account here: the in-cluster path
            resolve(None, None, env)
    finally:
        os.chdir(cwd)
    assert "RuntimeError" not in type(caught.value).__name__
    assert "home directory" not in str(caught.value)
