"""Pure units: where the cluster is, in kubectl's order of precedence."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from common.errors import UsageError
from common.kubeconfig import resolve


def write(path: Path, current: str | None, *contexts: tuple[str, str]) -> str:
    """A kubeconfig with a cluster, user and context per (context, server) pair."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": f"c-{n}", "cluster": {"server": s}} for n, s in contexts],
        "users": [{"name": f"u-{n}", "user": {"token": f"token-{n}"}} for n, _ in contexts],
        "contexts": [
            {"name": n, "context": {"cluster": f"c-{n}", "user": f"u-{n}"}} for n, _ in contexts
        ],
    }
    if current:
        config["current-context"] = current
    path.write_text(json.dumps(config))
    return str(path)


def test_explicit_kubeconfig_and_context_come_first(tmp_path: Path) -> None:
    explicit = write(tmp_path / "a", "one", ("one", "https://one"), ("two", "https://two"))
    env = {"KUBECONFIG": write(tmp_path / "b", "x", ("x", "https://x"))}
    assert resolve(explicit, None, env).server == "https://one"
    assert resolve(explicit, "two", env).server == "https://two"


def test_the_first_kubeconfig_files_current_context_wins(tmp_path: Path) -> None:
    first = write(tmp_path / "first", "alpha", ("alpha", "https://alpha"))
    second = write(tmp_path / "second", "beta", ("beta", "https://beta"))
    connection = resolve(None, None, {"KUBECONFIG": f"{first}:{second}"})
    assert connection.server == "https://alpha"
    assert connection.token == "token-alpha"


def test_entries_merge_across_files_first_wins(tmp_path: Path) -> None:
    first = write(tmp_path / "first", None, ("shared", "https://from-first"))
    second = write(tmp_path / "second", "shared", ("shared", "https://from-second"))
    assert resolve(None, None, {"KUBECONFIG": f"{first}:{second}"}).server == "https://from-first"


def test_missing_files_in_kubeconfig_are_skipped(tmp_path: Path) -> None:
    real = write(tmp_path / "real", "r", ("r", "https://r"))
    env = {"KUBECONFIG": f"{tmp_path / 'absent'}:{real}"}
    assert resolve(None, None, env).server == "https://r"


def test_in_cluster_comes_before_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    account = tmp_path / "sa"
    account.mkdir()
    (account / "token").write_text("pod-token\n")
    (account / "ca.crt").write_text("ca")
    monkeypatch.setattr("common.kubeconfig.SERVICE_ACCOUNT_DIR", account)
    home = tmp_path / "home"
    write_home = home / ".kube"
    write_home.mkdir(parents=True)
    write(write_home / "config", "h", ("h", "https://home"))
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    connection = resolve(None, None, env, home=home)
    assert connection.server == "https://10.0.0.1:443"
    assert connection.bearer_token() == "pod-token"
    assert resolve(None, None, {}, home=home).server == "https://home"


def test_nothing_configured_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no cluster configured"):
        resolve(None, None, {}, home=tmp_path)


def test_unknown_context_is_a_usage_error(tmp_path: Path) -> None:
    config = write(tmp_path / "a", "one", ("one", "https://one"))
    with pytest.raises(UsageError, match="context 'nope' not found"):
        resolve(config, "nope", {})


def test_relative_certificate_paths_are_relative_to_their_file(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "k").write_text(
        json.dumps(
            {
                "clusters": [
                    {"name": "c", "cluster": {"server": "https://s", "certificate-authority": "ca"}}
                ],
                "users": [
                    {
                        "name": "u",
                        "user": {"client-certificate-data": _b64("CERT"), "client-key": "key.pem"},
                    }
                ],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    connection = resolve(str(folder / "k"), None, {})
    assert connection.ca_file == str(folder / "ca")
    assert connection.key_file == str(folder / "key.pem")
    assert connection.cert_data == b"CERT"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
