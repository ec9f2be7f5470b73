"""Builders for a standard legacy installation and the module's default CR, from the
project's own manifests in hack/devenv/manifests."""

from __future__ import annotations

import copy
from typing import Any

from common import kyma
from common.cluster.client import resource_path
from common.errors import ApiError
from hack.devenv.cluster import FIXTURES, Cluster, load_manifests

SERVICE_MAPPINGS = ("connectivityproxy.sap.com", "v1", "servicemappings")
SERVICE_MAPPINGS_CRD = "servicemappings.connectivityproxy.sap.com"


def fixture(name: str) -> dict[str, Any]:
    return load_manifests(FIXTURES / name)[0]


def default_cr() -> dict[str, Any]:
    return fixture("default-cr.yaml")


def legacy_configmap(config_text: str | None = None) -> dict[str, Any]:
    configmap = fixture("legacy-configmap.yaml")
    if config_text is not None:
        configmap["data"] = {kyma.CONFIG_KEY: config_text}
    return configmap


def shared_mode_config() -> str:
    """The standard user configuration in shared tenant mode (the migrator then needs a
    service-key Secret)."""
    text = legacy_configmap()["data"][kyma.CONFIG_KEY]
    return str(text).replace("tenantMode: dedicated", "tenantMode: shared")


def legacy_info(**ports: str) -> dict[str, Any]:
    info = fixture("legacy-info-configmap.yaml")
    info["data"].update(ports)
    return info


def legacy_statefulset() -> dict[str, Any]:
    return fixture("legacy-statefulset.yaml")


def install(
    cluster: Cluster,
    *,
    config_text: str | None = None,
    configmap: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
    with_cr: bool = True,
    with_statefulset: bool = True,
    with_configmap: bool = True,
    with_info: bool = True,
    cr: dict[str, Any] | None = None,
) -> None:
    """A standard legacy installation plus the module's default CR."""
    objects: list[dict[str, Any]] = []
    if with_statefulset:
        objects.append(legacy_statefulset())
    if with_configmap:
        objects.append(configmap or legacy_configmap(config_text))
    if with_info:
        objects.append(info or legacy_info())
    if with_cr:
        objects.append(copy.deepcopy(cr) if cr else default_cr())
    cluster.apply(objects)


def service_mapping(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "connectivityproxy.sap.com/v1",
        "kind": "ServiceMapping",
        "metadata": {"name": name},
        "spec": {
            "type": "RFC",
            "subaccountId": "1b3c5d7e-9f21-4a6b-8c0d-2e4f6a8b0c1d",
            "serviceId": name,
            "internalAddress": f"{name}.default.svc.cluster.local:3300",
        },
    }


def service_key_secret(**string_data: str) -> dict[str, Any]:
    """The Secret a shared-mode installation reads its service key from (the migrator's
    default name), holding `string_data`."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "connectivity-service-service-key", "namespace": "kyma-system"},
        "stringData": string_data,
    }


def fresh_install(cluster: Cluster) -> None:
    """An empty cluster (no backup namespace either) with the standard installation."""
    cluster.reset()
    backup_namespace = resource_path("", "v1", "namespaces", name=kyma.BACKUP_NAMESPACE)
    if cluster.kube.get(backup_namespace) is not None:
        # Emptied by reset(); no controller manager, so the deletion is finished by hand.
        cluster.kube.delete(backup_namespace)
        cluster.finalize_namespace(kyma.BACKUP_NAMESPACE)
    install_standard(cluster)


def install_standard(cluster: Cluster) -> None:
    """The legacy installation the full chain runs against: the user configuration, the
    legacy workloads, RBAC, webhook, Istio and certificate objects, two ServiceMappings, and
    the module's default CR. Third-party CRDs are (re)applied, which also resets the
    ServiceMapping CRD's labels and annotations that a cleaner run adds."""
    crds = load_manifests(FIXTURES / "crds-third-party.yaml")
    crd_collection = resource_path("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    present = set(_list_names(cluster, crd_collection))
    if all(crd["metadata"]["name"] in present for crd in crds):
        # Only the ServiceMapping CRD's metadata changes in a run; re-applying just it is
        # much cheaper than waiting for every CRD to be established again.
        crds = [crd for crd in crds if crd["metadata"]["name"] == SERVICE_MAPPINGS_CRD]
    cluster.apply(crds)
    for name in _list_names(cluster, resource_path(*SERVICE_MAPPINGS)):
        cluster.kube.delete(resource_path(*SERVICE_MAPPINGS, name=name))
    install(cluster)
    cluster.apply_file(FIXTURES / "legacy-objects.yaml")
    cluster.apply_file(FIXTURES / "legacy-istio-objects.yaml")
    cluster.apply([service_mapping("erp-backend"), service_mapping("crm-backend")])


def _list_names(cluster: Cluster, collection: str) -> list[str]:
    try:
        return [item["metadata"]["name"] for item in cluster.kube.list(collection)]
    except ApiError as err:
        if err.status == 404:
            return []
        raise
