"""Every Kyma name the tools use, each defined once: the namespace, the ConnectivityProxy CR,
the legacy ConfigMaps and StatefulSet, the backup namespace, and the label and annotation keys
the steps set. Pure data: no I/O, no `kubernetes` (plans import it)."""

from __future__ import annotations

NAMESPACE = "kyma-system"  # the legacy component's, the module's and the CR's
COMPONENT = "connectivity-proxy"

# The ConnectivityProxy CR (connectivityproxies.connectivityproxy.sap.com/v1).
GROUP = "connectivityproxy.sap.com"
VERSION = "v1"
PLURAL = "connectivityproxies"
CRD_NAME = f"{PLURAL}.{GROUP}"
CR_NAME = COMPONENT

# The legacy installation (chart 2.9.3): its StatefulSet and the two ConfigMaps it reads.
STATEFULSET = COMPONENT
CONFIGMAP = COMPONENT  # the user configuration, as YAML under CONFIG_KEY
CONFIG_KEY = f"{COMPONENT}-config.yml"
INFO_CONFIGMAP = f"{COMPONENT}-info"  # the ports
SOURCES = (CONFIGMAP, INFO_CONFIGMAP)  # what cp-backup copies
# The ports of INFO_CONFIGMAP: key -> the path under the CR's spec.config it migrates to.
PORTS: dict[str, tuple[str, ...]] = {
    "onpremise_proxy_http_port": ("servers", "proxy", "http", "port"),
    "onpremise_proxy_ldap_port": ("servers", "proxy", "rfcAndLdap", "port"),
    "onpremise_socks5_proxy_port": ("servers", "proxy", "socks5", "port"),
}
OPERATOR_DEPLOYMENT = f"{COMPONENT}-operator"  # the module's; its Pod runs the chain

# The marks each step sets on the CR, last.
ANNOTATION_MIGRATED = f"{GROUP}/migrated"
ANNOTATION_BACKED_UP = f"{GROUP}/backed-up"
ANNOTATION_CLEANED = f"{GROUP}/cleaned"
ANNOTATION_CLEANED_OLD = f"{GROUP}/cleaned-up"  # an earlier spelling; counts as done
# Set by the migrator when legacy ConfigMaps remain without a legacy installation.
ANNOTATION_ORPHANED = f"{GROUP}/orphaned-legacy-config"
# The record of where the chain stands and why (common.record, README "Fleet view"): one
# annotation per field, so that kube-state-metrics reads each with one path.
ANNOTATION_STEP = f"{GROUP}/migration-step"
ANNOTATION_RESULT = f"{GROUP}/migration-result"
ANNOTATION_REASON = f"{GROUP}/migration-reason"
ANNOTATION_MESSAGE = f"{GROUP}/migration-message"
ANNOTATION_SINCE = f"{GROUP}/migration-since"
RECORD_ANNOTATIONS = (
    ANNOTATION_STEP,
    ANNOTATION_RESULT,
    ANNOTATION_REASON,
    ANNOTATION_MESSAGE,
    ANNOTATION_SINCE,
)
# Next to backed-up: the sources that did not exist.
MISSING_SOURCES_ANNOTATION = f"{GROUP}/backup-missing"
# With migrated: the content digest of each source the configuration was migrated from, so
# that a later change of the legacy ConfigMaps is noticed.
MIGRATED_DIGESTS_ANNOTATION = f"{GROUP}/migrated-digests"

# The backup: copies of SOURCES in their own namespace, labelled and annotated by cp-backup.
BACKUP_NAMESPACE = f"{COMPONENT}-backup"


def _backup_key(name: str) -> str:
    return f"backup.{GROUP}/{name}"


BACKUP_LABEL = _backup_key("made-by")
BACKUP_LABEL_VALUE = "cp-backup"
SOURCE_NAMESPACE_ANNOTATION = _backup_key("source-namespace")
SOURCE_NAME_ANNOTATION = _backup_key("source-name")
SOURCE_UID_ANNOTATION = _backup_key("source-uid")
SOURCE_RESOURCE_VERSION_ANNOTATION = _backup_key("source-resource-version")
BACKUP_TIME_ANNOTATION = _backup_key("time")
BACKUP_DIGEST_ANNOTATION = _backup_key("digest")
BACKUP_ANNOTATIONS = (
    SOURCE_NAMESPACE_ANNOTATION,
    SOURCE_NAME_ANNOTATION,
    SOURCE_UID_ANNOTATION,
    SOURCE_RESOURCE_VERSION_ANNOTATION,
    BACKUP_TIME_ANNOTATION,
    BACKUP_DIGEST_ANNOTATION,
)
# The values a person had set in the CR's spec.config that the migration replaced (issue 22),
# kept by cp-migrator in the backup namespace before it writes the CR; cp-restore --cr-values.
CR_VALUES_CONFIGMAP = f"{COMPONENT}-cr-before-migration"
CR_VALUES_KEY = "spec.config.yaml"  # the replaced values, as YAML under their spec.config paths
CR_VALUES_LABEL_VALUE = "cp-migrator"  # of BACKUP_LABEL
# A copy in the backup namespace that cp-backup did not make (the original backup.sh, a person)
# is never overwritten or deleted: it is kept under another name, marked as such.
PRESERVED_LABEL = _backup_key("preserved-copy-of")  # value: the source name
PRESERVED_FROM_ANNOTATION = _backup_key("preserved-from")  # namespace/name it was found under
PRESERVED_UID_ANNOTATION = _backup_key("preserved-uid")
PRESERVED_TIME_ANNOTATION = _backup_key("preserved-time")
PRESERVED_REASON_ANNOTATION = _backup_key("preserved-reason")

# Who installed what: the Kyma reconciler's annotation, the module operator's label.
RECONCILER_ANNOTATION = "reconciler.kyma-project.io/managed-by-reconciler-disclaimer"
MANAGED_BY = "app.kubernetes.io/managed-by"
MODULE_OPERATOR = "sap.connectivity.proxy.operator"


def ref(namespace: str | None, name: str) -> str:
    """`namespace/name` (or `name` for a cluster-scoped object), as logs and messages name
    objects."""
    return f"{namespace}/{name}" if namespace else name


CR_REF = ref(NAMESPACE, CR_NAME)
