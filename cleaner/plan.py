"""Pure planning of the clean-up: cluster data in, intended changes out. No I/O here.

Every legacy object is named by explicit group, version and resource: `gateways` exists in
both networking.istio.io and gateway.networking.k8s.io, `certificates` in several groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from common import backups, kyma, legacy, reasons
from common.cr import is_marked
from common.errors import RefusedError

ISTIO = "istio-system"

PRIMARY_NAME = "io.javaoperatorsdk/primary-name"
PRIMARY_NAMESPACE = "io.javaoperatorsdk/primary-namespace"
HANDOVER_LABELS = {kyma.MANAGED_BY: kyma.MODULE_OPERATOR}
HANDOVER_ANNOTATIONS = {PRIMARY_NAME: kyma.CR_NAME, PRIMARY_NAMESPACE: kyma.NAMESPACE}

MAPPING_PLURAL = "servicemappings"
MAPPING_CRD = f"{MAPPING_PLURAL}.{kyma.GROUP}"

# (group, resource) -> the versions the cluster serves, preferred first.
Served = Mapping[tuple[str, str], tuple[str, ...]]


@dataclass(frozen=True, order=True)
class Kind:
    group: str  # "" is the core group
    version: str  # the version to use when the cluster serves it (else another served one)
    resource: str
    namespaced: bool = True

    @property
    def name(self) -> str:
        """`resource.group` (kubectl's unambiguous spelling), e.g. gateways.networking.istio.io."""
        return f"{self.resource}.{self.group}" if self.group else self.resource


@dataclass(frozen=True, order=True)
class LegacyObject:
    kind: Kind
    namespace: str | None
    name: str

    @property
    def ref(self) -> str:
        return kyma.ref(self.namespace, self.name)

    def __str__(self) -> str:
        return f"{self.kind.name} {self.ref}"


STATEFULSETS = Kind("apps", "v1", "statefulsets")
DEPLOYMENTS = Kind("apps", "v1", "deployments")
SERVICES = Kind("", "v1", "services")
SERVICE_ACCOUNTS = Kind("", "v1", "serviceaccounts")
CONFIG_MAPS = Kind("", "v1", "configmaps")
SECRETS = Kind("", "v1", "secrets")
RBAC = "rbac.authorization.k8s.io"
CLUSTER_ROLE_BINDINGS = Kind(RBAC, "v1", "clusterrolebindings", namespaced=False)
CLUSTER_ROLES = Kind(RBAC, "v1", "clusterroles", namespaced=False)
VALIDATING_WEBHOOKS = Kind(
    "admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", namespaced=False
)
PRIORITY_CLASSES = Kind("scheduling.k8s.io", "v1", "priorityclasses", namespaced=False)
ENVOY_FILTERS = Kind("networking.istio.io", "v1beta1", "envoyfilters")
ISTIO_GATEWAYS = Kind("networking.istio.io", "v1beta1", "gateways")
VIRTUAL_SERVICES = Kind("networking.istio.io", "v1beta1", "virtualservices")
DESTINATION_RULES = Kind("networking.istio.io", "v1beta1", "destinationrules")
PEER_AUTHENTICATIONS = Kind("security.istio.io", "v1beta1", "peerauthentications")
GARDENER_CERTIFICATES = Kind("cert.gardener.cloud", "v1alpha1", "certificates")

# The legacy installation (chart 2.9.3), as the tables list it.
LEGACY_TABLE: tuple[tuple[Kind, str | None, tuple[str, ...]], ...] = (
    (STATEFULSETS, kyma.NAMESPACE, (kyma.STATEFULSET,)),
    (
        DEPLOYMENTS,
        kyma.NAMESPACE,
        ("connectivity-proxy-restart-watcher", "connectivity-proxy-sm-operator"),
    ),
    (
        SERVICES,
        kyma.NAMESPACE,
        (
            kyma.COMPONENT,
            "connectivity-proxy-smv",
            "connectivity-proxy-tunnel",
            "connectivity-proxy-tunnel-0",
            "connectivity-proxy-tunnel-healthcheck",
        ),
    ),
    (
        CLUSTER_ROLE_BINDINGS,
        None,
        (
            "connectivity-proxy-restart-watcher",
            "connectivity-proxy-service-mappings",
            "connectivity-proxy-service-mappings-kyma-system",
        ),
    ),
    (
        CLUSTER_ROLES,
        None,
        (
            "connectivity-proxy-restart-watcher",
            "connectivity-proxy-service-mappings",
            "connectivity-proxy-service-mappings-kyma-system",
            "connectivity-proxy-sm-validation-webhook-cluster-role",
        ),
    ),
    (
        SERVICE_ACCOUNTS,
        kyma.NAMESPACE,
        (
            "connectivity-proxy-restart-watcher",
            "connectivity-proxy-sm-operator",
            "connectivity-proxy-sm-validation",
            "connectivity-proxy-sm-validation-webhook",
        ),
    ),
    (VALIDATING_WEBHOOKS, None, ("webhook-secret",)),
    (CONFIG_MAPS, kyma.NAMESPACE, (*kyma.SOURCES, "connectivity-proxy-service-mappings")),
    (ENVOY_FILTERS, ISTIO, ("connectivity-proxy-custom-protocol",)),
    (ISTIO_GATEWAYS, kyma.NAMESPACE, ("kyma-gateway-cc",)),
    (VIRTUAL_SERVICES, kyma.NAMESPACE, ("cc-proxy", "cc-proxy-healthcheck")),
    (DESTINATION_RULES, kyma.NAMESPACE, ("connectivity-proxy-tunnel-0", kyma.COMPONENT)),
    (PEER_AUTHENTICATIONS, kyma.NAMESPACE, ("enable-permissive-mode-for-cp",)),
    (GARDENER_CERTIFICATES, ISTIO, ("cc-certs",)),
    (SECRETS, ISTIO, ("cc-certs-cacert", "cc-certs")),
    (SECRETS, kyma.NAMESPACE, ("connectivity-sm-operator-secrets-tls",)),
    (PRIORITY_CLASSES, None, ("connectivity-proxy-priority-class",)),
)
LEGACY_OBJECTS: tuple[LegacyObject, ...] = tuple(
    LegacyObject(kind, namespace, name) for kind, namespace, names in LEGACY_TABLE for name in names
)
LEGACY_STATEFULSET = LegacyObject(STATEFULSETS, kyma.NAMESPACE, kyma.STATEFULSET)
# Deleted only under the uid and resourceVersion recorded on their backups.
USER_CONFIG_MAPS = frozenset(
    LegacyObject(CONFIG_MAPS, kyma.NAMESPACE, name) for name in kyma.SOURCES
)
LEGACY_GROUPS = frozenset(kind.group for kind, _, _ in LEGACY_TABLE if kind.group)


# -- what to read ------------------------------------------------------------------------------


def served_version(kind: Kind, served: Served) -> str | None:
    """The version to address `kind` by, or None when the cluster does not serve it.
    The core group is always served (v1 cannot be turned off), so it is not discovered."""
    if not kind.group:
        return kind.version
    versions = served.get((kind.group, kind.resource), ())
    if kind.version in versions:
        return kind.version
    return versions[0] if versions else None


# Kinds read by name only, one metadata-only GET per object, never LISTed: RBAC cannot narrow
# a list by name, and `list` on these would let the cleaner read every Secret, every ConfigMap
# and every pod template (env values) in a namespace it shares with others. A LIST of the other
# kinds (Services, ServiceAccounts, RBAC, Istio routing) shows nothing that is not readable
# cluster-wide in a typical setup, so it keeps saving one request per extra name.
READ_BY_NAME = frozenset({SECRETS, CONFIG_MAPS, DEPLOYMENTS})


@dataclass(frozen=True)
class Read:
    """One read of legacy objects: a GET by name when one name is wanted from a kind in a
    namespace (always, for READ_BY_NAME), a LIST (metadata only) when several are: one request
    either way, the fewest that still show each object's labels and ownerReferences."""

    kind: Kind
    version: str
    namespace: str | None
    names: tuple[str, ...]

    @property
    def by_list(self) -> bool:
        return len(self.names) > 1


def reads(served: Served) -> tuple[list[Read], list[Kind]]:
    """The reads to make, and the kinds skipped because the cluster does not serve them."""
    grouped: dict[tuple[Kind, str | None, str | None], list[str]] = {}
    for obj in LEGACY_OBJECTS:
        one = obj.name if obj.kind in READ_BY_NAME else None
        grouped.setdefault((obj.kind, obj.namespace, one), []).append(obj.name)
    found: list[Read] = []
    skipped: list[Kind] = []
    for (kind, namespace, _), names in grouped.items():
        version = served_version(kind, served)
        if version is None:
            if kind not in skipped:
                skipped.append(kind)
            continue
        found.append(Read(kind, version, namespace, tuple(names)))
    return found, skipped


# -- ownership and hand-over -------------------------------------------------------------------


def handover_patch(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch that hands an object to the new operator, or None when it already is."""
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    patch: dict[str, Any] = {}
    wrong_labels = {k: v for k, v in HANDOVER_LABELS.items() if labels.get(k) != v}
    wrong_annotations = {k: v for k, v in HANDOVER_ANNOTATIONS.items() if annotations.get(k) != v}
    if wrong_labels:
        patch["labels"] = wrong_labels
    if wrong_annotations:
        patch["annotations"] = wrong_annotations
    return {"metadata": patch} if patch else None


# -- the gate before anything is read ------------------------------------------------------------


def not_migrated(cr: Mapping[str, Any], statefulset: Mapping[str, Any] | None) -> str | None:
    """Why a CR that is not migrated is not cleaned: nothing to do (no legacy installation; the
    CR is never marked cleaned then), or a refusal (RefusedError) while one runs."""
    if is_marked(dict(cr), kyma.ANNOTATION_MIGRATED):
        return None
    cr_name = kyma.CR_REF
    if legacy.installation_present(statefulset):
        raise RefusedError(
            f"{legacy.describe(statefulset)}, but ConnectivityProxy {cr_name} is not migrated "
            f"(no {kyma.ANNOTATION_MIGRATED}); nothing was deleted. Run cp-migrator and "
            f"cp-backup first: {backups.RESTART_CHAIN}",
            reason=reasons.NOT_MIGRATED,
        )
    return f"{cr_name} is not migrated and no legacy installation runs; nothing to clean"


def refusal_before_backup(cr: Mapping[str, Any]) -> str | None:
    """A cleaner run before the backup is refused: the backup is what makes deleting safe."""
    if is_marked(dict(cr), kyma.ANNOTATION_MIGRATED) and not is_marked(
        dict(cr), kyma.ANNOTATION_BACKED_UP
    ):
        return (
            f"ConnectivityProxy {kyma.CR_REF} is migrated but not backed up "
            f'({kyma.ANNOTATION_BACKED_UP} is not "true"); nothing was deleted. Run cp-backup '
            f"first: {backups.RESTART_CHAIN}"
        )
    return None


# -- the plan --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """What `observe` read; plain data only."""

    cr: Mapping[str, Any]
    # Metadata of every legacy object of a served kind; None when it does not exist.
    found: Mapping[LegacyObject, Mapping[str, Any] | None]
    versions: Mapping[Kind, str]  # the version each read kind is addressed by
    skipped_kinds: tuple[Kind, ...] = ()
    # The backups in connectivity-proxy-backup by source name (None: no backup).
    backups: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)
    # The ServiceMapping CRD, or None when it is not installed.
    mapping_crd: Mapping[str, Any] | None = None
    # The backup namespace's metadata (None: absent), and the content digest of each user
    # configuration ConfigMap that exists.
    backup_namespace: Mapping[str, Any] | None = None
    live_digests: Mapping[str, str] = field(default_factory=dict)
    live_configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Delete:
    target: LegacyObject
    version: str
    uid: str
    resource_version: str | None  # only for the user configuration (from its backup)
    reason: str


@dataclass(frozen=True)
class Patch:
    what: str
    patch: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class Kept:
    what: str
    reason: str


@dataclass
class Plan:
    # The legacy webhook goes first: it validates ServiceMappings, and its backend is being
    # removed, so each hand-over patch would otherwise wait on a dying (or absent) webhook.
    deletes_first: list[Delete] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    crd_patch: Patch | None = None
    mapping_version: str | None = None
    mappings_namespaced: bool = False
    kept: list[Kept] = field(default_factory=list)
    skipped_kinds: list[Kind] = field(default_factory=list)
    gone: list[LegacyObject] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)  # a person must act (exit 3)
    waits: list[str] = field(default_factory=list)  # a later run may get past them (exit 1)
    # The fleet record's reason for the waits, when one cause has a code of its own.
    wait_reason: str | None = None

    @property
    def all_deletes(self) -> list[Delete]:
        return self.deletes_first + self.deletes


def plan(inputs: Inputs) -> Plan:
    result = Plan(skipped_kinds=list(inputs.skipped_kinds))
    for obj in LEGACY_OBJECTS:
        if obj not in inputs.found:
            continue  # a kind the cluster does not serve
        meta = inputs.found[obj]
        if meta is None:
            result.gone.append(obj)
            continue
        owned = legacy.owned_by_module(meta)
        if owned:
            result.kept.append(Kept(str(obj), owned))
            continue
        if meta.get("deletionTimestamp"):
            result.gone.append(obj)  # already being deleted; nothing for us to do
            continue
        resource_version = None
        if obj in USER_CONFIG_MAPS:
            problem = user_config_problem(
                obj.name,
                inputs.backups.get(obj.name),
                live_digest=inputs.live_digests.get(obj.name),
                live=inputs.live_configs.get(obj.name),
                namespace=inputs.backup_namespace,
                migrated_digest=backups.migrated_digest(inputs.cr, obj.name),
                cr=inputs.cr,
            )
            if problem:
                result.kept.append(Kept(str(obj), problem.message))
                found = result.waits if problem.retry else result.refusals
                found.append(f"ConfigMap {obj.ref}: {problem.message}")
                if problem.retry and problem.reason:
                    result.wait_reason = result.wait_reason or problem.reason
                continue
            # The resourceVersion read: a change between this look and the DELETE is a 409.
            resource_version = str(meta["resourceVersion"])
            reason = "legacy user configuration; its verified backup holds the same data"
        else:
            reason = "legacy installation"
        delete = Delete(
            target=obj,
            version=inputs.versions[obj.kind],
            uid=str(meta["uid"]),
            resource_version=resource_version,
            reason=reason,
        )
        if obj.kind == VALIDATING_WEBHOOKS:
            result.deletes_first.append(delete)
        else:
            result.deletes.append(delete)

    crd = inputs.mapping_crd
    if crd is not None:
        patch = handover_patch(crd.get("metadata") or {})
        if patch:
            result.crd_patch = Patch(
                f"customresourcedefinitions.apiextensions.k8s.io {MAPPING_CRD}",
                patch,
                "hand ServiceMappings over to the module",
            )
        result.mapping_version = mapping_version(crd)
        result.mappings_namespaced = (crd.get("spec") or {}).get("scope") == "Namespaced"
    return result


def mapping_version(crd: Mapping[str, Any]) -> str | None:
    """The served version to list ServiceMappings by: the storage version when served."""
    versions = [v for v in (crd.get("spec") or {}).get("versions") or [] if v.get("served")]
    versions.sort(key=lambda v: not v.get("storage"))
    return str(versions[0]["name"]) if versions else None


@dataclass(frozen=True)
class Problem:
    message: str
    retry: bool = False  # True: a later run may get past it (exit 1), else a person acts
    reason: str | None = None  # the fleet record's code, when the cause has one of its own


def user_config_problem(
    name: str,
    backup: Mapping[str, Any] | None,
    *,
    live_digest: str | None,
    namespace: Mapping[str, Any] | None,
    migrated_digest: str | None,
    # For a drift refusal's diff: the CR (what was migrated) and the live ConfigMap.
    cr: Mapping[str, Any] | None = None,
    live: Mapping[str, Any] | None = None,
) -> Problem | None:
    """Why the live user-configuration ConfigMap `name` must not be deleted, or None when its
    backup will outlive it: a verified copy of ours, with the same data, in a namespace that
    exists and is not being deleted, and its data is what was migrated into the CR
    (`migrated_digest`: the digest the CR records for it; None when it records none)."""
    where = kyma.ref(kyma.BACKUP_NAMESPACE, name)
    run_backup = f"run cp-backup: {backups.RESTART_CHAIN}"
    if namespace is None:
        return Problem(
            f"namespace {kyma.BACKUP_NAMESPACE} does not exist, so it has no backup; {run_backup}"
        )
    if (namespace.get("metadata") or namespace).get("deletionTimestamp"):
        return Problem(
            f"namespace {kyma.BACKUP_NAMESPACE}, which holds its backup, is being deleted "
            "(Terminating); it is kept until a backup can outlive it, and a later run goes on",
            retry=True,
            reason=reasons.BACKUP_NAMESPACE_TERMINATING,
        )
    if backup is None:
        return Problem(f"it has no backup {where}; {run_backup}")
    problem = backups.backup_problem(dict(backup), name)
    if problem:
        return Problem(
            f"its backup {where} is not a verified copy: {problem}; {run_backup} (it keeps "
            "that copy under another name and makes its own)"
        )
    diff = backups.drift_diff(dict(cr), live) if cr is not None else ""
    drift = backups.drift_problem(migrated_digest, live_digest, diff)
    if drift:
        restore = backups.holds_migrated(migrated_digest, name, backup)
        return Problem(f"{drift}. {backups.remigrate_remedy(restore)}")
    backed_up = ((backup.get("metadata") or {}).get("annotations") or {}).get(
        kyma.BACKUP_DIGEST_ANNOTATION
    )
    if backed_up != live_digest:
        if migrated_digest:  # the CR holds this data; the backup is behind
            return Problem(f"its data differs from its backup {where}; {run_backup}")
        return Problem(
            f"its data differs from its backup {where} and the CR does not record what was "
            f"migrated. {backups.remigrate_remedy(False)}"
        )
    return None


# -- rendering -------------------------------------------------------------------------------


def render(plan: Plan, mapping_patches: Iterable[str]) -> str:
    """The three lists of a dry run: what would be deleted, what patched, what kept and why."""
    deletes = [f"{d.target}  ({d.reason})" for d in plan.all_deletes]
    patches = [f"{plan.crd_patch.what}  ({plan.crd_patch.reason})"] if plan.crd_patch else []
    patches += list(mapping_patches)
    kept = [f"{k.what}  ({k.reason})" for k in plan.kept]
    kept += [
        f"{kind.name} (every object)  (kind not served by this cluster)"
        for kind in plan.skipped_kinds
    ]
    lines: list[str] = []
    for title, items in (
        ("would delete", deletes),
        ("would patch", patches),
        ("kept", kept),
    ):
        lines.append(f"{title} ({len(items)}):")
        lines += [f"  {item}" for item in items] or ["  (none)"]
    return "\n".join(lines) + "\n"
