"""Pure units: the migrator's planning (no cluster)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from common.errors import RefusedError
from migrator import plan as planning

USER_CONFIG = """\
highAvailabilityMode: "off"
integration:
  auditlog:
    mode: console
servers:
  businessDataTunnel:
    externalHost: tunnel.example.com
  proxy:
    http:
      enabled: false
tenantMode: dedicated
subaccountId: 0a1b2c3d-0000-4000-8000-000000000001
"""

CR: dict[str, Any] = {
    "metadata": {"name": "connectivity-proxy", "namespace": "kyma-system", "resourceVersion": "7"},
    "spec": {
        "config": {
            "servers": {
                "businessDataTunnel": {"externalHost": "auto-provision", "externalPort": 443},
                "proxy": {"http": {"enabled": True, "port": 1}},
            },
            "tenantMode": "dedicated",
            "subaccountId": "auto-provision",
            "serviceChannels": {"enabled": True},
            "list": [1, 2, 3],
        },
        "deployment": {"replicaCount": 1, "image": {"tag": "2.11.0"}},
        "secretConfig": {"integration": {"connectivityService": {"secretName": "auto-provision"}}},
    },
}

INFO = {
    "data": {
        "onpremise_proxy_http_port": "20003",
        "onpremise_proxy_ldap_port": "20001",
        "onpremise_socks5_proxy_port": "20004",
    }
}


def inputs(config: str = USER_CONFIG, **overrides: Any) -> planning.Inputs:
    values: dict[str, Any] = {
        "cr": copy.deepcopy(CR),
        "config_map": {"data": {planning.CONFIG_KEY: config}},
        "info_map": copy.deepcopy(INFO),
    }
    values.update(overrides)
    return planning.Inputs(**values)


def test_user_values_win_and_the_rest_is_kept() -> None:
    result = planning.plan(inputs())
    config = result.spec_after["config"]
    assert config["servers"]["businessDataTunnel"] == {
        "externalHost": "tunnel.example.com",
        "externalPort": 443,
    }
    assert config["servers"]["proxy"]["http"] == {"enabled": False, "port": 20003}
    assert config["serviceChannels"] == {"enabled": True}
    assert config["subaccountId"] == "0a1b2c3d-0000-4000-8000-000000000001"
    assert result.spec_after["deployment"] == CR["spec"]["deployment"]


def test_lists_are_replaced_not_merged() -> None:
    result = planning.plan(inputs(USER_CONFIG + "list: [9]\n"))
    assert result.spec_after["config"]["list"] == [9]


def test_ports_come_from_the_info_configmap() -> None:
    proxy = planning.plan(inputs()).spec_after["config"]["servers"]["proxy"]
    assert (proxy["http"]["port"], proxy["rfcAndLdap"]["port"], proxy["socks5"]["port"]) == (
        20003,
        20001,
        20004,
    )


def test_the_patch_carries_the_precondition_and_the_mark() -> None:
    patch = planning.plan(inputs()).patch
    assert patch["metadata"] == {
        "resourceVersion": "7",
        "annotations": {"connectivityproxy.sap.com/migrated": "true"},
    }
    assert set(patch["spec"]) == {"config"}


def test_every_change_has_a_reason() -> None:
    changes = {c.path: c.reason for c in planning.plan(inputs()).changes}
    assert changes["spec.config.servers.proxy.http.port"].endswith("onpremise_proxy_http_port")
    assert "kyma-system/connectivity-proxy" in changes["spec.config.subaccountId"]


@pytest.mark.parametrize(
    "value", ["0", "65536", "-1", "http", " 20003", "20003 ", "2e3", "", "1.5"]
)
def test_bad_ports_are_refused_naming_the_key(value: str) -> None:
    info = copy.deepcopy(INFO)
    info["data"]["onpremise_socks5_proxy_port"] = value
    with pytest.raises(RefusedError) as caught:
        planning.plan(inputs(info_map=info))
    assert "onpremise_socks5_proxy_port" in str(caught.value)
    assert "kyma-system/connectivity-proxy-info" in str(caught.value)


def test_a_missing_port_key_is_refused() -> None:
    info = copy.deepcopy(INFO)
    del info["data"]["onpremise_proxy_ldap_port"]
    with pytest.raises(RefusedError, match="onpremise_proxy_ldap_port is missing"):
        planning.plan(inputs(info_map=info))


def test_an_unknown_tenant_mode_is_refused() -> None:
    with pytest.raises(RefusedError, match="tenantMode 'private'"):
        planning.plan(inputs(USER_CONFIG.replace("dedicated", "private")))


def test_shared_mode_sets_the_secret_name() -> None:
    shared = USER_CONFIG.replace("dedicated", "shared")
    result = planning.plan(inputs(shared, secret_exists=True, service_key_secret="my-key"))
    assert result.patch["spec"]["secretConfig"] == {
        "integration": {"connectivityService": {"secretName": "my-key"}}
    }
    assert planning.secret_to_check(inputs(shared, service_key_secret="my-key")) == "my-key"


def test_shared_mode_refuses_a_missing_secret_naming_it_and_the_option() -> None:
    shared = USER_CONFIG.replace("dedicated", "shared")
    with pytest.raises(RefusedError) as caught:
        planning.plan(inputs(shared, secret_exists=False))
    assert "kyma-system/connectivity-service-service-key" in str(caught.value)
    assert "--service-key-secret" in str(caught.value)


def test_dedicated_mode_leaves_secret_config_alone() -> None:
    assert planning.secret_to_check(inputs()) is None
    assert "secretConfig" not in planning.plan(inputs()).patch["spec"]


def test_missing_config_map_and_key_are_refused() -> None:
    with pytest.raises(RefusedError, match="is missing"):
        planning.plan(inputs(config_map=None))
    with pytest.raises(RefusedError, match=r"has no key connectivity-proxy-config\.yml"):
        planning.plan(inputs(config_map={"data": {"other": "x"}}))
    with pytest.raises(RefusedError, match="binaryData"):
        planning.plan(inputs(config_map={"binaryData": {planning.CONFIG_KEY: "eA=="}}))


def test_the_legacy_installation_is_recognised_by_its_annotation() -> None:
    assert not planning.legacy_installed(None)
    assert not planning.legacy_installed({"metadata": {"annotations": {}}})
    assert planning.legacy_installed(
        {"metadata": {"annotations": {planning.LEGACY_ANNOTATION: "DO NOT EDIT"}}}
    )


def test_planning_does_not_modify_its_inputs() -> None:
    given = inputs()
    before = copy.deepcopy(given.cr)
    planning.plan(given)
    assert given.cr == before
