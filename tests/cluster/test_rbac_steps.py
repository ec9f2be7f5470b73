"""No tool needs more than its step needs: the chain (migrate -> backup -> clean) over the full
standard installation (legacy workloads, RBAC, webhook, Istio and certificate objects,
ServiceMappings), each step as its own ServiceAccount bound to nothing but that step's roles
from deploy/rbac.yaml, with a token minted by the apiserver (TokenRequest API) and RBAC
enforced."""

from __future__ import annotations

from pathlib import Path

import pytest

from common import backups, kyma
from common.cluster.client import resource_path
from common.cr import annotations_of
from hack.devenv.cluster import Cluster
from tests.support.rbac import STEPS, Lab

MARKS = (kyma.ANNOTATION_MIGRATED, kyma.ANNOTATION_BACKED_UP, kyma.ANNOTATION_CLEANED)
EVENT_REASONS = {"migrator": "Migrated", "backup": "BackedUp", "cleaner": "Cleaned"}
MAPPINGS = resource_path("connectivityproxy.sap.com", "v1", "servicemappings")


@pytest.fixture(scope="module")
def lab(control_plane: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    found = Lab(control_plane, Path(tmp_path_factory.mktemp("rbac")))
    found.start()
    return found


def test_each_step_succeeds_with_only_its_own_roles(lab: Lab) -> None:
    from cleaner import plan as cleaner_plan

    cluster = lab.cluster
    lab.reinstall()
    lab.legacy_intact = False  # the cleaner removes it; the next test installs it again
    for step in STEPS:
        result = lab.run(step)
        assert result.exit_code == 0, f"{step}: {result.output}"
        # Not even the best-effort Event was refused, nor anything left unverified.
        assert "could not record an event" not in result.output, result.output
        assert "403" not in result.output, result.output
        assert "incomplete rules review" not in result.output, result.output

    cr = cluster.cr()
    assert cr is not None
    assert {key: annotations_of(cr).get(key) for key in MARKS} == dict.fromkeys(MARKS, "true")
    events = cluster.kube.list(resource_path("", "v1", "events", kyma.NAMESPACE))
    reasons = {
        event["reason"]
        for event in events
        if event["involvedObject"].get("name") == kyma.CR_NAME
        and event["involvedObject"].get("uid") == cr["metadata"]["uid"]
    }
    assert set(EVENT_REASONS.values()) <= reasons
    for name in kyma.SOURCES:
        backup = cluster.configmap(kyma.BACKUP_NAMESPACE, name)
        assert backup is not None and backups.digest_problem(backup) is None, name
    remaining = [
        str(obj)
        for obj in cleaner_plan.LEGACY_OBJECTS
        if cluster.kube.get(
            resource_path(
                obj.kind.group, obj.kind.version, obj.kind.resource, obj.namespace, obj.name
            )
        )
    ]
    assert remaining == []
    mappings = list(cluster.kube.list(MAPPINGS))
    assert len(mappings) == 3
    for mapping in mappings:
        labels = mapping["metadata"].get("labels") or {}
        assert labels.get(kyma.MANAGED_BY) == kyma.MODULE_OPERATOR, mapping
