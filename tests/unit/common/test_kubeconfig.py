"""Pure units: where the cluster is, in kubectl's order of precedence."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from common.cluster.kubeconfig import Connection, read_token_file, resolve
from common.errors import UsageError


def configured(connection: Connection) -> Any:
    """The kubernetes.client.Configuration the tools' client is built with."""
    from kubernetes.client import Configuration

    configuration = Configuration()
    connection.load(configuration)
    return configuration


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
    assert configured(connection).api_key["BearerToken"] == "Bearer token-alpha"


def test_entries_merge_across_files_first_wins(tmp_path: Path) -> None:
    first = write(tmp_path / "first", None, ("shared", "https://from-first"))
    second = write(tmp_path / "second", "shared", ("shared", "https://from-second"))
    assert resolve(None, None, {"KUBECONFIG": f"{first}:{second}"}).server == "https://from-first"


def test_missing_files_in_kubeconfig_are_skipped(tmp_path: Path) -> None:
    real = write(tmp_path / "real", "r", ("r", "https://r"))
    env = {"KUBECONFIG": f"{tmp_path / 'absent'}:{real}"}
    assert resolve(None, None, env).server == "https://r"


def test_in_cluster_comes_after_home_as_in_kubectl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = tmp_path / "sa"
    account.mkdir()
    (account / "token").write_text("pod-token\n")
    (account / "ca.crt").write_text("ca")
    monkeypatch.setattr("common.cluster.kubeconfig.SERVICE_ACCOUNT_DIR", account)
    home = tmp_path / "home"
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    connection = resolve(None, None, env, home=home)
    assert connection.server == "https://10.0.0.1:443"
    assert connection.token_file == str(account / "token")
    assert read_token_file(connection.token_file) == "pod-token"
    (account / "token").write_text("rotated-token")
    assert read_token_file(connection.token_file) == "rotated-token"
    write_home = home / ".kube"
    write_home.mkdir(parents=True)
    write(write_home / "config", "h", ("h", "https://home"))
    assert resolve(None, None, env, home=home).server == "https://home"
    assert resolve(None, None, {}, home=home).server == "https://home"


def test_in_cluster_ipv6_service_host_is_bracketed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("t")
    (tmp_path / "ca.crt").write_text("ca")
    monkeypatch.setattr("common.cluster.kubeconfig.SERVICE_ACCOUNT_DIR", tmp_path)
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert resolve(None, None, env, home=tmp_path).server == "https://[fd00::1]:443"


def test_a_kubeconfig_list_whose_files_are_all_missing_is_a_usage_error(tmp_path: Path) -> None:
    home = tmp_path / "home" / ".kube"
    home.mkdir(parents=True)
    write(home / "config", "h", ("h", "https://home"))
    env = {"KUBECONFIG": f"{tmp_path / 'typo'}:{tmp_path / 'other'}"}
    with pytest.raises(UsageError, match="typo") as caught:
        resolve(None, None, env, home=tmp_path / "home")
    assert caught.value.exit_code == 2


def test_a_missing_explicit_kubeconfig_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        resolve(str(tmp_path / "absent"), None, {})


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"clusters: [\xff\xfe", "not UTF-8"),
        (b"clusters: [unclosed", "not valid YAML"),
        (b"- a list", "not a kubeconfig"),
    ],
)
def test_an_unreadable_kubeconfig_is_a_usage_error_naming_it(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(content)
    with pytest.raises(UsageError, match=problem) as caught:
        resolve(str(bad), None, {})
    assert str(bad) in str(caught.value)


def test_impersonation_becomes_kubectls_headers(tmp_path: Path) -> None:
    config = json.loads(Path(write(tmp_path / "k", "x", ("x", "https://x"))).read_text())
    config["users"][0]["user"].update({"as": "jane", "as-groups": ["devs", "ops"]})
    (tmp_path / "k").write_text(json.dumps(config))
    connection = resolve(str(tmp_path / "k"), None, {})
    assert connection.impersonate == (
        ("Impersonate-User", "jane"),
        ("Impersonate-Group", "devs"),
        ("Impersonate-Group", "ops"),
    )
    assert "as jane" in connection.describe()


def test_groups_without_a_user_to_impersonate_are_refused(tmp_path: Path) -> None:
    config = json.loads(Path(write(tmp_path / "k", "x", ("x", "https://x"))).read_text())
    config["users"][0]["user"]["as-groups"] = ["devs"]
    (tmp_path / "k").write_text(json.dumps(config))
    with pytest.raises(UsageError, match="as-groups"):
        resolve(str(tmp_path / "k"), None, {})


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
    (folder / "ca").write_text("CA")
    (folder / "key.pem").write_text("KEY")
    configuration = configured(resolve(str(folder / "k"), None, {}))
    assert configuration.ssl_ca_cert == str(folder / "ca")
    assert configuration.key_file == str(folder / "key.pem")
    assert Path(configuration.cert_file).read_text() == "CERT"


def test_a_relative_token_file_is_relative_to_its_kubeconfig(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    config = json.loads(Path(write(folder / "k", "x", ("x", "https://x"))).read_text())
    config["users"][0]["user"] = {"tokenFile": "token"}
    (folder / "k").write_text(json.dumps(config))
    (folder / "token").write_text("file-token\n")
    connection = resolve(None, None, {"KUBECONFIG": str(folder / "k")})
    assert connection.token_file == str(folder / "token")
    assert read_token_file(connection.token_file) == "file-token"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
