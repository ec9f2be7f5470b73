"""ValidatingAdmissionPolicies (admissionregistration.k8s.io/v1) as clusters have them: a
policy and its binding, applied to the real apiserver and waited for until they are enforced
(the apiserver loads policies asynchronously), and removed again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from common.cluster.client import resource_path
from common.errors import ApiError
from hack.devenv.cluster import Cluster

GROUP, VERSION = "admissionregistration.k8s.io", "v1"
# A label that the policies below accept as "a person has allowed this".
MAY_DELETE = "ops.example.com/may-delete"  # as tests/support/states.MAY_DELETE
FROZEN = "ops.example.com/frozen"


def _path(plural: str, name: str | None = None) -> str:
    return resource_path(GROUP, VERSION, plural, name=name)


def policy(
    name: str,
    *,
    resources: list[dict[str, Any]],
    expression: str,
    message: str,
    namespace: str,
    match_conditions: list[dict[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """A policy and its binding (Deny), for `resources` in `namespace`."""
    spec: dict[str, Any] = {
        "failurePolicy": "Fail",
        "matchConstraints": {"resourceRules": resources},
        "validations": [{"expression": expression, "message": message}],
    }
    if match_conditions:
        spec["matchConditions"] = match_conditions
    return [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": spec,
        },
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": f"{name}-binding"},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        },
    ]


def configmap_deletes_unless_labelled(namespace: str) -> list[dict[str, Any]]:
    """A guard a platform team puts on kyma-system: ConfigMaps there are deleted only once a
    person has labelled them as deletable."""
    return policy(
        "guard-kyma-system-configmaps",
        resources=[
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["DELETE"],
                "resources": ["configmaps"],
            }
        ],
        expression=(
            f"has(oldObject.metadata.labels) && '{MAY_DELETE}' in oldObject.metadata.labels"
        ),
        message=f"ConfigMaps in {namespace} may only be deleted once labelled {MAY_DELETE}",
        namespace=namespace,
    )


def service_accounts_never_delete_configmaps(namespace: str) -> list[dict[str, Any]]:
    """Backups are deleted by people only: no ServiceAccount may delete ConfigMaps there."""
    return policy(
        "people-delete-backups",
        resources=[
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["DELETE"],
                "resources": ["configmaps"],
            }
        ],
        match_conditions=[
            {
                "name": "service-accounts",
                "expression": "request.userInfo.username.startsWith('system:serviceaccount:')",
            }
        ],
        expression="false",
        message=f"only people delete ConfigMaps in {namespace}",
        namespace=namespace,
    )


def frozen_connectivity_proxy(namespace: str) -> list[dict[str, Any]]:
    """A change freeze: a ConnectivityProxy labelled frozen is not changed (removing the label
    is the change that ends the freeze, so it is allowed)."""
    return policy(
        "freeze-connectivity-proxy",
        resources=[
            {
                "apiGroups": ["connectivityproxy.sap.com"],
                "apiVersions": ["v1"],
                "operations": ["UPDATE"],
                "resources": ["connectivityproxies"],
            }
        ],
        expression=(
            f"!has(object.metadata.labels) || !('{FROZEN}' in object.metadata.labels) "
            f"|| object.metadata.labels['{FROZEN}'] != 'true'"
        ),
        message=f"the ConnectivityProxy is frozen (label {FROZEN}=true); remove the label first",
        namespace=namespace,
    )


def _wait(probe: Any, *, denied: bool) -> None:
    """Until `probe()` (a request the policy denies) is denied, or no longer denied."""
    deadline = time.monotonic() + 30
    while True:
        try:
            probe()
            now_denied = False
        except ApiError as err:
            now_denied = "ValidatingAdmissionPolicy" in err.api_message
            if not now_denied:
                raise
        if now_denied == denied:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the admission policy was not {'enforced' if denied else 'gone'} in 30s"
            )
        time.sleep(0.2)


def apply_and_wait(cluster: Cluster, objects: list[dict[str, Any]], probe: Any) -> None:
    """Apply a policy and its binding; wait until the apiserver enforces them (it loads
    policies asynchronously)."""
    cluster.apply(objects)
    _wait(probe, denied=True)


def remove_and_wait(cluster: Cluster, objects: list[dict[str, Any]], probe: Any) -> None:
    remove(cluster, objects)
    _wait(probe, denied=False)


@contextmanager
def enforced(cluster: Cluster, objects: list[dict[str, Any]], probe: Any) -> Iterator[None]:
    """A policy and its binding, enforced while the block runs, then removed."""
    apply_and_wait(cluster, objects, probe)
    try:
        yield
    finally:
        remove_and_wait(cluster, objects, probe)


def remove(cluster: Cluster, objects: list[dict[str, Any]]) -> None:
    for obj in reversed(objects):
        plural = (
            "validatingadmissionpolicybindings"
            if obj["kind"].endswith("Binding")
            else "validatingadmissionpolicies"
        )
        cluster.kube.delete(_path(plural, obj["metadata"]["name"]))  # 404: already gone
