"""Operability against the real control plane (issue 14): YAML 1.1 warnings, cp-status on
Terminating and forbidden objects, signals, progress."""

from __future__ import annotations

from tests.support import chain, legacy
from tests.support.chain import MIGRATOR
from tests.support.cluster import Cluster

KEY = legacy.CONFIG_KEY
BASE = legacy.legacy_configmap()["data"][KEY]


def test_a_yaml11_reading_is_migrated_with_a_warning_naming_field_and_value(
    cluster: Cluster,
) -> None:
    # 7:23 is 7 * 60 + 23 = 443 in YAML 1.1: valid for the CRD, so migrated, but never silently.
    assert "externalPort: 443" in BASE
    legacy.install(cluster, config_text=BASE.replace("externalPort: 443", "externalPort: 7:23"))
    result = chain.run_in_process(MIGRATOR, cluster.kubeconfig)
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if "sexagesimal" in line]
    assert line.startswith("WARNING")
    assert ".servers.businessDataTunnel.externalPort" in line
    assert "'7:23'" in line and "the value taken is 443" in line
    cr = cluster.cr()
    assert cr is not None
    assert cr["spec"]["config"]["servers"]["businessDataTunnel"]["externalPort"] == 443


def test_a_configuration_without_surprises_gives_no_yaml11_warning(cluster: Cluster) -> None:
    legacy.install(cluster, config_text=BASE)
    result = chain.run_in_process(MIGRATOR, cluster.kubeconfig)
    assert result.exit_code == 0, result.output
    assert "YAML 1.1" not in result.output
