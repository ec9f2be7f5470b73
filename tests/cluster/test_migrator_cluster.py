"""The migrator against the real control plane."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from common import kyma
from common.cluster.client import resource_path
from hack.devenv import legacy
from hack.devenv.cluster import FIXTURES, Cluster, load_manifests
from tests.support import chain

MIGRATOR = "migrator.cli:main"
ORPHANED = "connectivityproxy.sap.com/orphaned-legacy-config"
MIGRATED = "connectivityproxy.sap.com/migrated"


def user_config() -> dict[str, object]:
    loaded = yaml.safe_load(legacy.legacy_configmap()["data"][kyma.CONFIG_KEY])
    assert isinstance(loaded, dict)
    return loaded


def test_migrates_config_and_ports_and_marks_the_cr(cluster: Cluster) -> None:
    legacy.install(cluster)
    result = cluster.run(MIGRATOR)
    assert result.exit_code == 0, result.output
    cr = cluster.cr()
    assert cr is not None
    assert cr["metadata"]["annotations"][MIGRATED] == "true"
    config = cr["spec"]["config"]
    wanted = user_config()
    assert config["subaccountId"] == wanted["subaccountId"]
    assert (
        config["servers"]["businessDataTunnel"]["externalHost"]
        == (
            wanted["servers"]["businessDataTunnel"]["externalHost"]  # type: ignore[index]
        )
    )
    assert config["servers"]["proxy"]["http"]["port"] == 20003
    assert config["servers"]["proxy"]["rfcAndLdap"]["port"] == 20001
    assert config["servers"]["proxy"]["socks5"]["port"] == 20004
    # What the user did not set keeps the CR's value.
    assert config["serviceChannels"] == {"enabled": True}
    assert "migrated" in result.stdout.splitlines()[-1]


def test_keeps_fields_it_does_not_own(cluster: Cluster) -> None:
    cr = legacy.default_cr()
    cr["metadata"]["labels"] = {"team": "network"}
    cr["metadata"]["annotations"] = {"note": "keep me"}
    cr["spec"]["deployment"]["replicaCount"] = 3
    cr["spec"]["deployment"]["image"]["tag"] = "9.9.9"
    cr["spec"]["ingress"]["className"] = "nginx"
    legacy.install(cluster, cr=cr)
    assert cluster.run(MIGRATOR).exit_code == 0
    after = cluster.cr()
    assert after is not None
    assert after["metadata"]["labels"] == {"team": "network"}
    assert after["metadata"]["annotations"]["note"] == "keep me"
    assert after["spec"]["deployment"]["replicaCount"] == 3
    assert after["spec"]["deployment"]["image"]["tag"] == "9.9.9"
    assert after["spec"]["ingress"] == cr["spec"]["ingress"]
    assert after["spec"]["secretConfig"] == cr["spec"]["secretConfig"]


def test_a_second_run_changes_nothing(cluster: Cluster) -> None:
    legacy.install(cluster)
    assert cluster.run(MIGRATOR).exit_code == 0
    first = cluster.cr()
    again = cluster.run(MIGRATOR)
    assert again.exit_code == 0
    assert "already migrated" in again.output
    second = cluster.cr()
    assert first and second
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_a_missing_cr_is_exit_1(cluster: Cluster) -> None:
    legacy.install(cluster, with_cr=False)
    result = cluster.run(MIGRATOR)
    assert result.exit_code == 1
    assert "kyma-system/connectivity-proxy does not exist" in result.output


def test_no_legacy_configuration_at_all_is_nothing_to_do(cluster: Cluster) -> None:
    legacy.install(cluster, with_statefulset=False, with_configmap=False, with_info=False)
    before = cluster.cr()
    result = cluster.run(MIGRATOR)
    assert result.exit_code == 0
    assert "no legacy Connectivity Proxy configuration" in result.output
    after = cluster.cr()
    assert before and after
    assert chain.cr_version(after) == chain.cr_version(before)  # but the record


def test_orphaned_legacy_configmaps_are_left_alone_and_recorded(cluster: Cluster) -> None:
    """ConfigMaps without their StatefulSet (someone removed the installation by hand): they
    may be stale, so the CR is not overwritten and the operator is not blocked."""
    legacy.install(cluster, with_statefulset=False)
    before = cluster.cr()
    result = cluster.run(MIGRATOR)
    assert result.exit_code == 0, result.output
    assert "--migrate-orphaned" in result.output
    after = cluster.cr()
    assert before and after
    annotations = after["metadata"].get("annotations") or {}
    assert MIGRATED not in annotations
    assert annotations[ORPHANED] == (
        "kyma-system/connectivity-proxy,kyma-system/connectivity-proxy-info"
    )
    assert after["spec"] == before["spec"]
    events = cluster.kube.list(resource_path("", "v1", "events", "kyma-system"))
    assert "OrphanedLegacyConfig" in {event["reason"] for event in events}
    assert cluster.run(MIGRATOR).exit_code == 0  # again: no second write
    again = cluster.cr()
    assert again and again["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]
    # The remedy the message gives: migrate them on purpose.
    asked = cluster.run(MIGRATOR, "--migrate-orphaned")
    assert asked.exit_code == 0, asked.output
    migrated = cluster.cr()
    assert migrated
    annotations = migrated["metadata"]["annotations"]
    assert annotations[MIGRATED] == "true" and ORPHANED not in annotations


def test_a_statefulset_without_the_reconciler_annotation_is_still_legacy(cluster: Cluster) -> None:
    legacy.install(cluster, with_statefulset=False)
    statefulset = legacy.legacy_statefulset()
    del statefulset["metadata"]["annotations"]
    cluster.apply([statefulset])
    result = cluster.run(MIGRATOR)
    assert result.exit_code == 0, result.output
    assert "not the reconciler's" in result.output
    cr = cluster.cr()
    assert cr and cr["metadata"]["annotations"][MIGRATED] == "true"


def test_an_unknown_field_is_refused_not_pruned(cluster: Cluster) -> None:
    text = legacy.legacy_configmap()["data"][kyma.CONFIG_KEY] + "madeUpSetting: 1\n"
    legacy.install(cluster, config_text=text)
    before = cluster.cr()
    result = cluster.run(MIGRATOR)
    assert result.exit_code == 3, result.output
    assert "madeUpSetting" in result.output
    after = cluster.cr()
    assert before and after
    assert chain.cr_version(after) == chain.cr_version(before)  # but the record


def test_a_pattern_violation_is_refused_naming_the_field(cluster: Cluster) -> None:
    text = legacy.legacy_configmap()["data"][kyma.CONFIG_KEY].replace(
        "subaccountId: ", "subaccountId: a/"
    )
    legacy.install(cluster, config_text=text)
    result = cluster.run(MIGRATOR)
    assert result.exit_code == 3, result.output
    assert "spec.config.subaccountId" in result.output


def test_a_bad_port_is_refused_naming_the_key(cluster: Cluster) -> None:
    legacy.install(cluster, info=legacy.legacy_info(onpremise_proxy_http_port="99999"))
    result = cluster.run(MIGRATOR)
    assert result.exit_code == 3
    assert "onpremise_proxy_http_port" in result.output


def test_shared_mode_needs_the_secret(cluster: Cluster) -> None:
    text = legacy.legacy_configmap()["data"][kyma.CONFIG_KEY].replace(
        "tenantMode: dedicated", "tenantMode: shared"
    )
    legacy.install(cluster, config_text=text)
    refused = cluster.run(MIGRATOR)
    assert refused.exit_code == 3
    assert "kyma-system/connectivity-service-service-key" in refused.output
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "connectivity-service-service-key",
                    "namespace": "kyma-system",
                },
                "stringData": {"service_key": "CANARY-SECRET-VALUE"},
            }
        ]
    )
    done = cluster.run(MIGRATOR)
    assert done.exit_code == 0, done.output
    assert "CANARY-SECRET-VALUE" not in done.output
    cr = cluster.cr()
    assert cr is not None
    assert cr["spec"]["secretConfig"]["integration"]["connectivityService"]["secretName"] == (
        "connectivity-service-service-key"
    )


def test_service_key_secret_option_comes_from_the_environment(cluster: Cluster) -> None:
    text = legacy.legacy_configmap()["data"][kyma.CONFIG_KEY].replace(
        "tenantMode: dedicated", "tenantMode: shared"
    )
    legacy.install(cluster, config_text=text)
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "my-service-key", "namespace": "kyma-system"},
                "stringData": {"service_key": "x"},
            }
        ]
    )
    result = cluster.run(MIGRATOR, env={"CP_SERVICE_KEY_SECRET": "my-service-key"})
    assert result.exit_code == 0, result.output
    cr = cluster.cr()
    assert cr is not None
    assert cr["spec"]["secretConfig"]["integration"]["connectivityService"]["secretName"] == (
        "my-service-key"
    )


def test_dry_run_prints_a_diff_and_changes_nothing(cluster: Cluster) -> None:
    legacy.install(cluster)
    before = cluster.cr()
    result = cluster.run(MIGRATOR, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "+        externalHost: cp." in result.stdout
    assert "-        externalHost: auto-provision" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("dry run:")
    after = cluster.cr()
    assert before and after
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_dry_run_of_a_refused_config_exits_3(cluster: Cluster) -> None:
    text = legacy.legacy_configmap()["data"][kyma.CONFIG_KEY] + "madeUpSetting: 1\n"
    legacy.install(cluster, config_text=text)
    assert cluster.run(MIGRATOR, "--dry-run").exit_code == 3


def test_runs_as_a_process_with_json_logs(cluster: Cluster) -> None:
    legacy.install(cluster)
    result = cluster.run_process("migrator")
    assert result.exit_code == 0, result.stderr
    import json

    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert all({"ts", "level", "msg"} <= set(line) for line in lines)
    assert any(line.get("object") == "kyma-system/connectivity-proxy" for line in lines)


@pytest.mark.parametrize(
    "secret_name",
    [
        # What a real shared-mode cluster has (the CRD's default); every config runs here.
        "connectivity-proxy-service-key",
        # The name an early README gave: only the shared-mode configs, where it matters.
        "connectivity-service-service-key",
    ],
)
def test_every_fleet_configmap_migrates(
    cluster: Cluster, shared_fixtures: object, secret_name: str
) -> None:
    """The 133 production ConfigMaps, onto the module's real CRD, with nothing lost; in
    shared tenant mode with whichever service-key Secret the cluster has."""
    from pathlib import Path

    folder = Path(str(shared_fixtures))
    cluster.apply_file(folder / "connectivityproxy-crd.yaml")
    fleet = load_manifests(folder / "fleet-configmaps.yaml")
    assert len(fleet) == 133
    shared_only = secret_name != "connectivity-proxy-service-key"
    migrated = 0
    try:
        for index, configmap in enumerate(fleet):
            config = yaml.safe_load(configmap["data"][kyma.CONFIG_KEY])
            shared = config.get("tenantMode") == "shared"
            if shared_only and not shared:
                continue
            cluster.reset()
            for key in ("uid", "resourceVersion", "creationTimestamp"):
                configmap["metadata"].pop(key, None)
            objects = [configmap]
            if shared:
                objects.append(
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {"name": secret_name, "namespace": "kyma-system"},
                        "stringData": {"service_key": "{}"},
                    }
                )
            legacy.install(cluster, configmap=configmap)
            cluster.apply(objects)
            result = cluster.run(MIGRATOR)
            assert result.exit_code == 0, f"fleet ConfigMap #{index}: {result.output}"
            cr = cluster.cr()
            assert cr is not None
            assert_contains(cr["spec"]["config"], config, f"#{index} spec.config")
            if shared:
                secret_config = cr["spec"]["secretConfig"]["integration"]["connectivityService"]
                assert secret_config["secretName"] == secret_name, f"#{index}"
            migrated += 1
    finally:
        cluster.apply_file(FIXTURES / "crd-connectivityproxy.yaml")
    assert migrated == (9 if shared_only else 133)


def assert_contains(actual: object, expected: object, path: str) -> None:
    """Every value the user wrote is in the CR (ports aside, which the info ConfigMap sets)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} was dropped"
            assert_contains(actual[key], value, f"{path}.{key}")
    elif not path.endswith(".port"):
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


@pytest.mark.parametrize("env_var", ["CP_DRY_RUN"])
def test_options_come_from_environment_variables(cluster: Cluster, env_var: str) -> None:
    legacy.install(cluster)
    result = cluster.run(MIGRATOR, env={env_var: "1"})
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1].startswith("dry run:")


def test_numbers_and_words_where_the_crd_wants_text_keep_their_exact_text(
    cluster: Cluster,
) -> None:
    text = legacy.legacy_configmap()["data"][kyma.CONFIG_KEY]
    text = re.sub(r"subaccountId: .*", "subaccountId: 0443", text)
    text = re.sub(r"highAvailabilityMode: .*", "highAvailabilityMode: off", text)
    legacy.install(cluster, config_text=text)
    result = cluster.run(MIGRATOR)
    assert result.exit_code == 0, result.output
    assert (
        "spec.config.subaccountId: the CRD wants text; kept the YAML value as its exact text"
        in (result.output)
    )
    cr = cluster.cr()
    assert cr is not None
    assert cr["spec"]["config"]["subaccountId"] == "0443"  # never 291
    assert cr["spec"]["config"]["highAvailabilityMode"] == "off"  # never false


def test_a_cr_created_again_after_the_migration_is_migrated_from_the_backups(
    cluster: Cluster,
) -> None:
    """The chain ran to the end (the legacy ConfigMaps are gone), then the module was disabled
    and enabled again: a new default CR. Its configuration comes from the backups."""
    legacy.install(cluster)
    for step in (MIGRATOR, "backup.cli:backup_main", "cleaner.cli:main"):
        assert cluster.run(step).exit_code == 0
    migrated = cluster.cr()
    assert migrated is not None
    cluster.kube.delete(
        resource_path(
            "connectivityproxy.sap.com",
            "v1",
            "connectivityproxies",
            "kyma-system",
            "connectivity-proxy",
        )
    )
    cluster.apply([legacy.default_cr()])
    result = cluster.run(MIGRATOR)
    assert result.exit_code == 0, result.output
    again = cluster.cr()
    assert again is not None
    assert again["spec"]["config"] == migrated["spec"]["config"]
    events = cluster.kube.list(resource_path("", "v1", "events", "kyma-system"))
    messages = [e["message"] for e in events if e["reason"] == "Migrated"]
    assert any(
        "from its backup connectivity-proxy-backup/connectivity-proxy" in m for m in messages
    )
    for step in ("backup.cli:backup_main", "cleaner.cli:main"):
        assert cluster.run(step).exit_code == 0
    annotations = (cluster.cr() or {})["metadata"]["annotations"]
    assert annotations[MIGRATED] == annotations["connectivityproxy.sap.com/cleaned"] == "true"


@pytest.mark.parametrize(
    ("mode", "args"),
    [("dedicated", ()), ("shared", ()), ("dedicated", ("--dry-run",))],
)
def test_a_run_reads_its_input_once_and_parses_the_user_configuration_once(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, mode: str, args: tuple[str, ...]
) -> None:
    """One choice of source and one YAML parse a run, whatever uses them after: the plan,
    the Secrets to look up (shared mode), the YAML 1.1 warning (`7:23` = 443)."""
    from migrator import config_yaml
    from migrator import plan as planning

    text = (
        legacy.legacy_configmap()["data"][kyma.CONFIG_KEY]
        .replace("tenantMode: dedicated", f"tenantMode: {mode}")
        .replace("externalPort: 443", "externalPort: 7:23")
    )
    legacy.install(cluster, config_text=text)
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "connectivity-service-service-key",
                    "namespace": "kyma-system",
                },
                "stringData": {"service_key": "x"},
            }
        ]
    )
    parses: list[str] = []
    choices: list[str] = []
    parse, choose = config_yaml._parse, planning.choose_source

    def counted_parse(text: str, where: str, *rest: Any) -> Any:
        parses.append(where)
        return parse(text, where, *rest)

    def counted_choice(inputs: Any) -> Any:
        choices.append("choose_source")
        return choose(inputs)

    monkeypatch.setattr(config_yaml, "_parse", counted_parse)
    monkeypatch.setattr(planning, "choose_source", counted_choice)
    result = cluster.run(MIGRATOR, *args)
    assert result.exit_code == 0, result.output
    assert "sexagesimal" in result.output
    assert parses == [f"ConfigMap kyma-system/connectivity-proxy key {kyma.CONFIG_KEY}"]
    assert choices == ["choose_source"]
    if mode == "shared" and not args:
        cr = cluster.cr()
        assert cr is not None
        secret = cr["spec"]["secretConfig"]["integration"]["connectivityService"]["secretName"]
        assert secret == "connectivity-service-service-key"
