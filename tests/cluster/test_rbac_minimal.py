"""The deploy/ RBAC is minimal: every single grant of every step's roles (one verb on one
resource, and one name where the rule names them) is needed. Without it, the step that owns it
fails (exit 1) with a message naming the verb and the resource, and leaves nothing half done:
its mark is not on the CR (the cleaner writes nothing at all: its permission preflight or a
refused read stops it first). The exceptions are the best-effort Events: without `create
events` the step succeeds and the Event is what is lost; without `get` or `patch` of the
step's Warning Event, a refused run is refused all the same and the Event's count is lost.
A run that fails may leave its record on the CR (README "Fleet view"): "nothing changed"
means nothing but the record.

Grants the standard chain does not use are exercised by the state whose path uses them
(shared tenant mode, a stale backup, an absent CR): see tests/support/rbac.py SCENARIOS. Each
step starts from the state the earlier steps leave, made by running them as the admin."""

from __future__ import annotations

from pathlib import Path

import pytest

from common import kyma
from common.cr import annotations_of
from hack.devenv.cluster import Cluster
from tests.support.rbac import STEPS, Grant, Lab, grants

GRANTS = [grant for step in STEPS for grant in grants(step)]
MARK = {
    "migrator": kyma.ANNOTATION_MIGRATED,
    "backup": kyma.ANNOTATION_BACKED_UP,
    "cleaner": kyma.ANNOTATION_CLEANED,
}


@pytest.fixture(scope="module")
def lab(control_plane: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    found = Lab(control_plane, Path(tmp_path_factory.mktemp("rbac")))
    found.start()
    return found


@pytest.mark.parametrize("grant", GRANTS, ids=[grant.id for grant in GRANTS])
def test_every_single_grant_is_needed(lab: Lab, grant: Grant) -> None:
    cluster = lab.cluster
    lab.prepare(grant.step, grant.scenario)
    before = lab.versions()
    try:
        with lab.without(grant):
            result = lab.run(grant.step)
        after = lab.versions()
        cr = cluster.cr()
    finally:
        lab.restore(grant.scenario)
    if before != after and grant.step == "cleaner":
        lab.legacy_intact = False  # the next cleaner run needs a fresh installation

    if grant.warning_event:
        # Refused all the same (exit 3); what is lost is the Warning Event's count.
        assert result.exit_code == 3, result.output
        assert "could not record the Warning event" in result.output, result.output
        assert f'cannot {grant.verb} resource "events"' in result.output, result.output
        return
    if grant.best_effort:
        assert result.exit_code == 0, result.output
        assert "could not record an event" in result.output, result.output
        assert 'cannot create resource "events"' in result.output, result.output
        return
    assert result.exit_code == 1, result.output
    assert f'cannot {grant.verb} resource "{grant.resource}" in API group "{grant.group}"' in (
        result.output
    )
    if grant.name:
        assert grant.name in result.output
    # Nothing half done.
    assert cr is None or MARK[grant.step] not in annotations_of(cr)
    if grant.step == "migrator":  # the CR is its only write
        assert after == before
    if grant.step == "cleaner":
        changed = sorted(
            key for key in set(before) | set(after) if before.get(key) != after.get(key)
        )
        assert changed == [], "the cleaner wrote something"
