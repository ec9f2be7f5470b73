"""What "a legacy installation is present" means, in one place for every tool.

The legacy component (chart 2.9.3) runs as StatefulSet kyma-system/connectivity-proxy. The
module's own proxy may carry the same name once the module runs; it is told apart by the
module's label or an ownerReference to a ConnectivityProxy. The Kyma reconciler annotates
what it installs, but a StatefulSet without that annotation (an installation by hand, or an
older reconciler) is still the legacy proxy: its configuration is just as real.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common import kyma

STATEFULSET_REF = kyma.ref(kyma.NAMESPACE, kyma.STATEFULSET)


def owned_by_module(meta: Mapping[str, Any]) -> str | None:
    """Why the new module owns an object (so it is never treated as legacy), or None."""
    if (meta.get("labels") or {}).get(kyma.MANAGED_BY) == kyma.MODULE_OPERATOR:
        return f"owned by the module (label {kyma.MANAGED_BY}={kyma.MODULE_OPERATOR})"
    for owner in meta.get("ownerReferences") or []:
        group = str(owner.get("apiVersion", "")).partition("/")[0]
        if owner.get("kind") == "ConnectivityProxy" and group == kyma.GROUP:
            return f"owned by the module (ownerReference to ConnectivityProxy {owner.get('name')})"
    return None


def installation_present(statefulset: Mapping[str, Any] | None) -> bool:
    """True when the legacy proxy's StatefulSet (metadata is enough) is there and not the
    module's own."""
    if statefulset is None:
        return False
    meta = statefulset.get("metadata", statefulset)
    return owned_by_module(meta) is None


def describe(statefulset: Mapping[str, Any] | None) -> str:
    """One phrase for logs: what was found at the legacy StatefulSet's name."""
    if statefulset is None:
        return f"StatefulSet {STATEFULSET_REF} does not exist"
    meta = statefulset.get("metadata", statefulset)
    owned = owned_by_module(meta)
    if owned:
        return f"StatefulSet {STATEFULSET_REF} is the module's ({owned})"
    if kyma.RECONCILER_ANNOTATION in (meta.get("annotations") or {}):
        return f"StatefulSet {STATEFULSET_REF} was installed by the Kyma reconciler"
    return f"StatefulSet {STATEFULSET_REF} is a legacy installation (not the reconciler's)"
