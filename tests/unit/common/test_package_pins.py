"""Pins: the `kubernetes` package's behaviours that common/cluster/ mends (issue 21), as of
kubernetes 37.0.3. Each test shows the package still behaving so; when one fails, the package
changed: check its release notes, and drop or adapt the code the message names."""

# mypy: disable-error-code=no-untyped-call
# (the package's loaders have no type hints)

from __future__ import annotations

import inspect
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

CHECKED = "37.0.3"


def loaded(config: dict[str, Any] | Any, base: str | None = None) -> Any:
    from kubernetes.client import Configuration
    from kubernetes.config.kube_config import KubeConfigLoader

    configuration = Configuration()
    KubeConfigLoader(config_dict=config, config_base_path=base).load_and_set(configuration)
    return configuration


def kubeconfig(cluster: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    return {
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1", **cluster}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }


def drop(what: str) -> str:
    return f"kubernetes changed since {CHECKED}: {what}"


def test_the_version_these_pins_were_checked_against() -> None:
    import kubernetes

    assert kubernetes.__version__ == CHECKED, drop(
        "re-run this file's pins against the new version, then update CHECKED here and the "
        "version named in common/cluster/{kubeconfig_rules,proxies,execplugin,keymaterial}.py"
    )


def test_a_users_relative_client_key_is_read_against_the_clusters_file(tmp_path: Path) -> None:
    from kubernetes.config.kube_config import KubeConfigMerger

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = kubeconfig({}, {"client-certificate": "c.crt", "client-key": "c.key"})
    first = {k: v for k, v in whole.items() if k != "users"}
    (tmp_path / "a" / "config").write_text(json.dumps(first))
    (tmp_path / "b" / "config").write_text(json.dumps({"users": whole["users"]}))
    for folder in ("a", "b"):
        (tmp_path / folder / "c.crt").write_text("x")
        (tmp_path / folder / "c.key").write_text("x")
    merger = KubeConfigMerger(f"{tmp_path / 'a' / 'config'}:{tmp_path / 'b' / 'config'}")
    configuration = loaded(merger.config)
    assert configuration.key_file == str(tmp_path / "a" / "c.key"), drop(
        "a user's client-key is now read against its own file: drop anchor_user's "
        "client-certificate/client-key in common/cluster/kubeconfig_rules.py"
    )


def test_a_string_false_turns_verification_off() -> None:
    configuration = loaded(kubeconfig({"insecure-skip-tls-verify": "false"}, {"token": "t"}))
    assert configuration.verify_ssl is False, drop(
        'insecure-skip-tls-verify: "false" no longer turns verification off; kubeconfig_rules.'
        "check_types may still be wanted (kubectl refuses the file), but say so in its docstring"
    )


def test_insecure_skip_tls_verify_with_a_ca_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "ca").write_text("x")
    config = kubeconfig(
        {"insecure-skip-tls-verify": True, "certificate-authority": str(tmp_path / "ca")},
        {"token": "t"},
    )
    assert loaded(config).verify_ssl is False, drop(
        "insecure-skip-tls-verify with a CA is refused: drop kubeconfig_rules.check_cluster"
    )


def test_an_empty_kubeconfig_file_is_refused(tmp_path: Path) -> None:
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.kube_config import KubeConfigMerger

    (tmp_path / "empty").write_text("")
    with pytest.raises(ConfigException, match="empty"):
        KubeConfigMerger(str(tmp_path / "empty"))


def test_credentials_in_the_proxy_url_are_not_sent() -> None:
    from kubernetes.client import ApiClient, Configuration

    configuration = Configuration()
    configuration.host = "https://127.0.0.1:1"
    configuration.proxy = "http://user:secret@127.0.0.1:3128"
    manager = ApiClient(configuration).rest_client.pool_manager
    sent = {k.lower() for k in (getattr(manager, "proxy_headers", None) or {})}
    assert "proxy-authorization" not in sent, drop(
        "credentials in the proxy URL are sent now: drop the header in "
        "common/cluster/proxies.settle"
    )


def test_all_proxy_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes.client import Configuration

    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:3128")
    configuration = Configuration()
    configuration.host = "https://127.0.0.1:1"
    assert configuration.proxy == "http://127.0.0.1:3128", drop(
        "ALL_PROXY is ignored now: common/cluster/proxies.settle need not pick the proxy"
    )


def test_the_exec_plugin_runs_its_own_way() -> None:
    from kubernetes.config import exec_provider, kube_config

    assert kube_config.EXPIRY_SKEW_PREVENTION_DELAY.total_seconds() == 300, drop(
        "the exec token skew changed: see whether common/cluster/execplugin.py is still needed"
    )
    run = inspect.getsource(exec_provider.ExecProvider.run)
    assert "communicate()" in run and "interactiveMode" not in run, drop(
        "the package's exec plugin has a time limit or honours interactiveMode now: see "
        "whether common/cluster/execplugin.py is still needed"
    )
    assert "self.cluster.value" in run, drop(
        "provideClusterInfo is sent as client-go sends it now (execplugin.cluster_info)"
    )


def test_key_data_is_written_to_a_temp_file() -> None:
    import base64

    from kubernetes.config.kube_config import FileOrData

    secret = b"-----BEGIN PRIVATE KEY-----pin-----END PRIVATE KEY-----"
    entry = {"client-key-data": base64.b64encode(secret).decode()}
    path = FileOrData(entry, "client-key").as_file()
    try:
        assert os.path.dirname(path) == tempfile.gettempdir(), drop(
            "key data no longer goes to the temp directory: see whether "
            "common/cluster/keymaterial.py is still needed"
        )
        assert Path(path).read_bytes() == secret
    finally:
        os.remove(path)
