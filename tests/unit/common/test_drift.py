"""Pure units of common.drift: what changed in a legacy ConfigMap against the CR."""

from __future__ import annotations

from typing import Any

from common import drift
from common.kyma import CONFIG_KEY


def cr(config: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"config": config}}


def configmap(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "kyma-system"}, "data": data}


def test_only_changed_fields_are_named_old_to_new() -> None:
    held = cr({"subaccountId": "a", "servers": {"businessDataTunnel": {"externalPort": 443}}})
    text = "subaccountId: b\nservers:\n  businessDataTunnel:\n    externalPort: 443\n"
    lines = drift.changes(held, configmap("connectivity-proxy", {CONFIG_KEY: text}))
    assert lines == [f'key {CONFIG_KEY}: field subaccountId: "a" → "b"']


def test_text_kept_by_the_migration_is_no_change() -> None:
    held = cr({"subaccountId": "0443", "flag": True, "list": [1, "x"]})
    text = "subaccountId: 0443\nflag: true\nlist: [1, x]\n"
    assert drift.changes(held, configmap("connectivity-proxy", {CONFIG_KEY: text}))[0].startswith(
        "no value the CR holds differs"
    )


def test_a_credential_is_redacted_on_both_sides() -> None:
    held = cr({"integration": {"clientSecret": "old-secret-value"}})
    text = "integration:\n  clientSecret: new-secret-value\n"
    (line,) = drift.changes(held, configmap("connectivity-proxy", {CONFIG_KEY: text}))
    assert "old-secret-value" not in line and "new-secret-value" not in line
    assert line.endswith("<redacted> → <redacted>")


def test_ports_are_named_with_their_cr_field() -> None:
    held = cr({"servers": {"proxy": {"http": {"port": 20003}}}})
    info = configmap("connectivity-proxy-info", {"onpremise_proxy_http_port": "20005"})
    assert drift.changes(held, info) == [
        'key onpremise_proxy_http_port (spec.config.servers.proxy.http.port): "20003" → "20005"'
    ]


def test_yaml_that_no_longer_parses_and_an_alias_bomb_end_quickly() -> None:
    bad = configmap("connectivity-proxy", {CONFIG_KEY: "a: [\n"})
    assert drift.changes(cr({}), bad)[0].startswith(f"key {CONFIG_KEY}: no longer valid YAML")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(20)
    )
    lines = drift.changes(cr({}), configmap("connectivity-proxy", {CONFIG_KEY: bomb}))
    assert len(lines) <= drift.MAX_LINES + 1
