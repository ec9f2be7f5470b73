"""Pure units (issue 22): which apiserver answers to a write are refusals (exit 3) and how
they are named; the backup plan for immutable copies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backup import plan as planning
from common import backups, kyma
from common.cluster.client import Kube
from common.cluster.kubeconfig import Connection
from common.cluster.transport import Response
from common.errors import EXIT_REFUSED, EXIT_RETRY, ApiError, RejectedWrite
from hack.devenv import legacy
from tests.support.states import backup_sh_copy

CM = "/api/v1/namespaces/connectivity-proxy-backup/configmaps/connectivity-proxy"


def answer(status: int, body: dict[str, Any]) -> Kube:
    def transport(*_args: Any) -> Response:
        status_body = {"kind": "Status", "apiVersion": "v1", "code": status, **body}
        return Response(
            status, {"content-type": "application/json"}, json.dumps(status_body).encode()
        )

    return Kube(Connection(server="https://k", source="test"), transport=transport)


def failure(kube: Kube, method: str = "PUT") -> ApiError:
    with pytest.raises(ApiError) as caught:
        kube.request(method, CM, body={"metadata": {"name": "connectivity-proxy"}})
    return caught.value


def test_a_422_on_a_write_is_a_refusal_naming_the_object_and_field() -> None:
    err = failure(
        answer(
            422,
            {
                "reason": "Invalid",
                "message": 'ConfigMap "connectivity-proxy" is invalid: data: Forbidden: field is '
                "immutable when `immutable` is set",
                "details": {"kind": "ConfigMap", "causes": [{"field": "data"}]},
            },
        )
    )
    assert isinstance(err, RejectedWrite) and err.exit_code == EXIT_REFUSED
    assert str(err).startswith(
        "configmaps connectivity-proxy-backup/connectivity-proxy: the apiserver refuses to "
        "update it: 422 Invalid (field data)"
    )
    assert "No retry changes this answer" in str(err)


@pytest.mark.parametrize(
    ("message", "policy"),
    [
        (
            "configmaps \"x\" is forbidden: ValidatingAdmissionPolicy 'guard' with binding "
            "'guard-binding' denied request: labelled only",
            "ValidatingAdmissionPolicy guard (binding guard-binding)",
        ),
        (
            'admission webhook "validate.example.com" denied the request: no deletes',
            "admission webhook validate.example.com",
        ),
    ],
)
def test_an_admission_denial_is_a_refusal_naming_the_policy(message: str, policy: str) -> None:
    err = failure(answer(403, {"reason": "Forbidden", "message": message}), "DELETE")
    assert isinstance(err, RejectedWrite) and err.exit_code == EXIT_REFUSED
    assert err.policy == policy
    assert f"refuses to delete it: {policy} denies it" in str(err)
    assert "not RBAC" in str(err)


def test_an_rbac_403_and_a_failed_read_stay_exit_1() -> None:
    rbac = 'configmaps "x" is forbidden: User "u" cannot delete resource "configmaps"'
    err = failure(answer(403, {"reason": "Forbidden", "message": rbac}), "DELETE")
    assert not isinstance(err, RejectedWrite) and err.exit_code == EXIT_RETRY
    read = failure(answer(422, {"reason": "Invalid", "message": "?"}), "GET")
    assert not isinstance(read, RejectedWrite)


# -- the backup plan: immutable copies -----------------------------------------------------------


def _source(name: str) -> dict[str, Any]:
    found = legacy.legacy_configmap() if name == "connectivity-proxy" else legacy.legacy_info()
    found["metadata"].update({"uid": f"uid-{name}", "resourceVersion": "7"})
    return found


def _inputs(backups: dict[str, dict[str, Any] | None], **kwargs: Any) -> planning.BackupInputs:
    cr = {"metadata": {"annotations": {kyma.ANNOTATION_MIGRATED: "true"}}}
    return planning.BackupInputs(
        sources={name: _source(name) for name in kyma.SOURCES},
        backups=backups,
        namespace_exists=True,
        now="2026-12-06T00:00:00Z",
        cr=cr,
        **kwargs,
    )


def test_a_persons_immutable_copy_is_preserved_then_replaced() -> None:
    theirs = backup_sh_copy(_source("connectivity-proxy"))
    theirs.update(immutable=True)
    theirs["metadata"]["uid"] = "uid-theirs"
    plan = planning.plan_backup(_inputs({"connectivity-proxy": theirs}))
    verbs = [(a.verb, a.object.rpartition("/")[2]) for a in plan.writes]
    kept_as = backups.preserved_name("connectivity-proxy", theirs)
    assert verbs[:2] == [(planning.PRESERVE, kept_as), (planning.REPLACE, "connectivity-proxy")]
    replace = plan.writes[1]
    assert replace.after is not None and "uid" not in replace.after["metadata"]
    assert replace.after["immutable"] is True
    assert plan.writes[0].after and plan.writes[0].after["immutable"] is True


def test_our_immutable_copy_with_the_sources_data_is_kept() -> None:
    source = _source("connectivity-proxy")
    content = planning.backup_content(source, "2026-01-01T00:00:00Z")
    ours = planning._with_content(
        {"metadata": {"name": "connectivity-proxy", "uid": "u1", "resourceVersion": "1"}}, content
    )
    ours["immutable"] = True
    ours["metadata"]["annotations"][kyma.SOURCE_RESOURCE_VERSION_ANNOTATION] = "1"
    ours["metadata"]["annotations"][kyma.BACKUP_DIGEST_ANNOTATION] = backups.content_digest(ours)
    plan = planning.plan_backup(_inputs({"connectivity-proxy": ours}))
    assert [a.verb for a in plan.actions if a.object.endswith("/connectivity-proxy")] == [
        planning.KEEP
    ]
