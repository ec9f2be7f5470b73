"""Helpers for the cleaner and cp-status cluster tests: a full legacy installation (with the
third-party CRDs), ServiceMappings, and the apiserver's audit log of what a tool sent."""

from __future__ import annotations

import time
from typing import Any

from cleaner import observe
from hack.devenv import legacy
from hack.devenv.cluster import FIXTURES, AuditWindow, Cluster

THIRD_PARTY = FIXTURES / "crds-third-party.yaml"


def wait_discovery(cluster: Cluster, resources: set[tuple[str, str]], *, served: bool) -> None:
    """Aggregated discovery follows a CRD change a moment later; the cleaner reads it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = cluster.kube.request("GET", "/apis", accept=observe.AGGREGATED_DISCOVERY)
        found = set(observe.served_from_aggregated(answer))
        if (resources <= found) if served else not (resources & found):
            return
        time.sleep(0.1)
    raise TimeoutError(f"discovery did not settle for {resources}")


def install_third_party_crds(cluster: Cluster) -> None:
    crds = cluster.apply_file(THIRD_PARTY)
    wait_discovery(
        cluster,
        {(crd["spec"]["group"], crd["spec"]["names"]["plural"]) for crd in crds},
        served=True,
    )


def install_legacy(cluster: Cluster, *, istio: bool = True) -> None:
    """A standard legacy installation with every object of the issue's tables, and the CR."""
    if istio:
        install_third_party_crds(cluster)
    legacy.install(cluster)
    cluster.apply_file(FIXTURES / "legacy-objects.yaml")
    if istio:
        cluster.apply_file(FIXTURES / "legacy-istio-objects.yaml")


def mapping(name: str, namespace: str | None = None, **meta: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, **meta}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "connectivityproxy.sap.com/v1",
        "kind": "ServiceMapping",
        "metadata": metadata,
        "spec": {"type": "HTTP", "subaccountId": "sub", "serviceId": name},
    }


class Audit(AuditWindow):
    """The requests a tool (by user agent) sent from now on, as `verb requestURI`."""

    def requests(self, user_agent: str) -> list[str]:
        return [
            f"{event['verb']} {event['requestURI']}"
            for event in self.events()
            if event.get("stage") == "ResponseComplete" and event.get("userAgent") == user_agent
        ]
