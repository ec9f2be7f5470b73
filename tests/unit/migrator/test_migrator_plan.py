"""Pure units: the migrator's planning (no cluster)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from common import kyma, legacy
from common.backups import content_digest
from common.errors import RefusedError, RetryableError
from migrator import plan as planning
from tests.support.backup_copies import backup_copy

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


LEGACY_STATEFULSET = {
    "metadata": {
        "name": "connectivity-proxy",
        "namespace": "kyma-system",
        "annotations": {"reconciler.kyma-project.io/managed-by-reconciler-disclaimer": "x"},
    }
}


def inputs(config: str = USER_CONFIG, **overrides: Any) -> planning.Inputs:
    values: dict[str, Any] = {
        "cr": copy.deepcopy(CR),
        "config_map": {"data": {planning.CONFIG_KEY: config}},
        "info_map": copy.deepcopy(INFO),
        "statefulset": copy.deepcopy(LEGACY_STATEFULSET),
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
    given = inputs()
    patch = planning.plan(given).patch
    assert given.config_map is not None and given.info_map is not None
    digests = (
        f"connectivity-proxy={content_digest(given.config_map)},"
        f"connectivity-proxy-info={content_digest(given.info_map)}"
    )
    assert patch["metadata"] == {
        "resourceVersion": "7",
        "annotations": {
            "connectivityproxy.sap.com/migrated": "true",
            "connectivityproxy.sap.com/migrated-digests": digests,
        },
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
    shared = USER_CONFIG.replace("tenantMode: dedicated", "tenantMode: shared")
    named = inputs(shared, service_key_secret="my-key")
    assert planning.reads(named) == ("my-key",)
    result = planning.plan(
        inputs(shared, secrets_found={"my-key": True}, service_key_secret="my-key")
    )
    assert result.patch["spec"]["secretConfig"] == {
        "integration": {"connectivityService": {"secretName": "my-key"}}
    }


@pytest.mark.parametrize(
    ("found", "chosen"),
    [
        ({"connectivity-proxy-service-key": True}, "connectivity-proxy-service-key"),
        (
            {"connectivity-proxy-service-key": False, "connectivity-service-service-key": True},
            "connectivity-service-service-key",
        ),
    ],
)
def test_shared_mode_uses_the_secret_the_cluster_has(found: dict[str, bool], chosen: str) -> None:
    shared = USER_CONFIG.replace("tenantMode: dedicated", "tenantMode: shared")
    assert planning.reads(inputs(shared)) == planning.SERVICE_KEY_SECRETS
    result = planning.plan(inputs(shared, secrets_found=found))
    assert result.secret_name == chosen


def test_prepared_inputs_are_chosen_and_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The source is chosen and the user configuration parsed once; what comes after (the
    Secrets to look up, the plan, the YAML 1.1 warnings) reads the prepared inputs."""
    from migrator import config_yaml

    calls: list[str] = []
    parse, choose = config_yaml._parse, planning.choose_source

    def counted_parse(*args: Any) -> Any:
        calls.append("parse")
        return parse(*args)

    def counted_choice(given: planning.Inputs) -> planning.Source:
        calls.append("choose_source")
        return choose(given)

    monkeypatch.setattr(config_yaml, "_parse", counted_parse)
    monkeypatch.setattr(planning, "choose_source", counted_choice)
    shared = USER_CONFIG.replace("tenantMode: dedicated", "tenantMode: shared")
    prepared = planning.prepared(inputs(shared + "fileMode: 0755\n"))
    assert prepared.source is not None and prepared.config is not None
    assert planning.reads(prepared) == planning.SERVICE_KEY_SECRETS
    found = dict.fromkeys(planning.SERVICE_KEY_SECRETS, True)
    result = planning.plan(dataclasses.replace(prepared, secrets_found=found))
    [warning] = config_yaml.yaml11_warnings(prepared.config, result.spec_after["config"])
    assert "octal" in warning.message
    assert calls == ["choose_source", "parse"]


def test_shared_mode_refuses_a_missing_secret_naming_both_and_the_option() -> None:
    shared = USER_CONFIG.replace("tenantMode: dedicated", "tenantMode: shared")
    with pytest.raises(RefusedError) as caught:
        planning.plan(
            inputs(shared, secrets_found=dict.fromkeys(planning.SERVICE_KEY_SECRETS, False))
        )
    for name in (*planning.SERVICE_KEY_SECRETS, "--service-key-secret"):
        assert name in str(caught.value)


def test_dedicated_mode_leaves_secret_config_alone() -> None:
    assert planning.reads(inputs()) == ()
    assert "secretConfig" not in planning.plan(inputs()).patch["spec"]


def test_missing_config_map_and_key_are_refused() -> None:
    # While the legacy installation runs, the reconciler puts a missing one back: a retry.
    with pytest.raises(RetryableError, match=r"is missing.*reconciler installs it again"):
        planning.plan(inputs(config_map=None))
    with pytest.raises(RefusedError, match=r"has no key connectivity-proxy-config\.yml"):
        planning.plan(inputs(config_map={"data": {"other": "x"}}))
    with pytest.raises(RefusedError, match="binaryData"):
        planning.plan(inputs(config_map={"binaryData": {planning.CONFIG_KEY: "eA=="}}))


def test_a_legacy_installation_is_any_statefulset_the_module_does_not_own() -> None:
    assert not legacy.installation_present(None)
    assert legacy.installation_present(LEGACY_STATEFULSET)
    assert legacy.installation_present({"metadata": {"name": "connectivity-proxy"}})
    module_owned = {"metadata": {"labels": {kyma.MANAGED_BY: kyma.MODULE_OPERATOR}}}
    assert not legacy.installation_present(module_owned)


def test_without_an_installation_the_live_configmaps_are_orphaned_unless_asked() -> None:
    given = inputs(statefulset=None)
    assert planning.choose_source(given).kind == planning.ORPHANED
    asked = inputs(statefulset=None, migrate_orphaned=True)
    assert planning.choose_source(asked).kind == planning.FROM_LEFTOVER
    patch = planning.orphaned_patch(given)
    assert patch is not None
    assert patch["metadata"]["annotations"] == {
        planning.ORPHANED_ANNOTATION: (
            "kyma-system/connectivity-proxy,kyma-system/connectivity-proxy-info"
        )
    }


def test_leftover_configmaps_that_cp_backup_copied_are_migrated() -> None:
    given = inputs(statefulset=None)
    assert given.config_map is not None
    found = {"connectivity-proxy": backup_copy("connectivity-proxy", given.config_map)}
    assert planning.choose_source(inputs(statefulset=None, backups=found)).kind == (
        planning.FROM_LEFTOVER
    )


def test_a_recreated_cr_is_migrated_from_the_backups() -> None:
    live = inputs()
    assert live.config_map is not None and live.info_map is not None
    found = {
        "connectivity-proxy": backup_copy("connectivity-proxy", live.config_map),
        "connectivity-proxy-info": backup_copy("connectivity-proxy-info", live.info_map),
    }
    given = inputs(statefulset=None, config_map=None, info_map=None, backups=found)
    source = planning.choose_source(given)
    assert source.kind == planning.FROM_BACKUP
    result = planning.plan(given, source)
    assert result.spec_after == planning.plan(live).spec_after
    assert "connectivity-proxy-backup/connectivity-proxy" in result.changes[0].reason


def test_a_copy_by_another_tool_is_migrated_from_but_a_tampered_one_of_ours_is_refused() -> None:
    live = inputs()
    assert live.config_map is not None
    foreign = {"metadata": {"name": "connectivity-proxy"}, "data": live.config_map["data"]}
    given = inputs(
        statefulset=None,
        config_map=None,
        info_map=None,
        backups={"connectivity-proxy": foreign, "connectivity-proxy-info": live.info_map},
    )
    assert planning.choose_source(given).kind == planning.FROM_BACKUP
    tampered = backup_copy("connectivity-proxy", live.config_map)
    tampered["data"] = {planning.CONFIG_KEY: "tenantMode: shared\n"}
    with pytest.raises(RefusedError) as caught:
        planning.choose_source(
            inputs(
                statefulset=None,
                config_map=None,
                info_map=None,
                backups={"connectivity-proxy": tampered},
            )
        )
    assert f"kubectl label configmap -n {kyma.BACKUP_NAMESPACE} connectivity-proxy" in str(
        caught.value
    )


def test_no_configuration_anywhere_is_nothing_to_do() -> None:
    given = inputs(statefulset=None, config_map=None, info_map=None)
    assert planning.choose_source(given).kind == planning.NOTHING


SCHEMA = {
    "properties": {
        "config": {
            "type": "object",
            "properties": {
                "subaccountId": {"type": "string"},
                "highAvailabilityMode": {"type": "string"},
                "servers": {
                    "type": "object",
                    "properties": {
                        "businessDataTunnel": {
                            "type": "object",
                            "properties": {
                                "externalPort": {"type": "integer"},
                                "externalHost": {"type": "string"},
                            },
                        }
                    },
                },
                "list": {"type": "array", "items": {"type": "string"}},
            },
        }
    }
}


def test_non_string_scalars_where_the_crd_wants_text_keep_their_exact_text() -> None:
    config = (
        "subaccountId: 0443\nhighAvailabilityMode: off\nlist: [12345, 2024-01-01, on]\n"
        "servers:\n  businessDataTunnel:\n    externalPort: 0443\n    externalHost: 12345\n"
    )
    result = planning.plan(inputs(config, spec_schema=SCHEMA))
    after = result.spec_after["config"]
    assert after["subaccountId"] == "0443"
    assert after["highAvailabilityMode"] == "off"
    assert after["list"] == ["12345", "2024-01-01", "on"]
    assert after["servers"]["businessDataTunnel"] == {"externalPort": 291, "externalHost": "12345"}
    assert dict(result.as_text)["spec.config.subaccountId"] == "0443"
    assert "spec.config.servers.businessDataTunnel.externalPort" not in dict(result.as_text)


def test_planning_does_not_modify_its_inputs() -> None:
    given = inputs()
    before = copy.deepcopy(given.cr)
    planning.plan(given)
    assert given.cr == before


def test_a_crd_default_the_migration_replaces_is_no_ones_value() -> None:
    """The module's CR carries `tenantMode: dedicated`, the CRD's default: a shared-mode
    migration replaces it, and that is not a value a person set before the migration. A value
    that is neither the default nor the placeholder is one."""
    schema: dict[str, Any] = copy.deepcopy(SCHEMA)
    properties = schema["properties"]["config"]["properties"]
    properties["tenantMode"] = {"type": "string", "default": "dedicated"}
    shared = USER_CONFIG.replace("tenantMode: dedicated", "tenantMode: shared")
    persons = copy.deepcopy(CR)
    persons["spec"]["config"]["servers"]["businessDataTunnel"]["externalHost"] = "mine.example"
    result = planning.plan(
        inputs(
            shared,
            cr=persons,
            spec_schema=schema,
            secrets_found={"connectivity-proxy-service-key": True},
        )
    )
    replaced = planning.replaced_values(result, schema)
    assert replaced == {
        "servers": {
            "businessDataTunnel": {"externalHost": "mine.example"},
            "proxy": {"http": {"enabled": True, "port": 1}},  # the CR's own, not defaults
        }
    }
    # Without the CRD's word, the default counts as set (nothing is dropped unknowingly).
    assert "tenantMode" in planning.replaced_values(result)
