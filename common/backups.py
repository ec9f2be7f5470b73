"""Names the backup step shares with the cleaner and cp-status, and the check of a backup."""

from __future__ import annotations

from typing import Any

from common.configmap import content_digest

NAMESPACE = "connectivity-proxy-backup"
SOURCE_NAMESPACE = "kyma-system"
SOURCES = ("connectivity-proxy", "connectivity-proxy-info")

_PREFIX = "backup.connectivityproxy.sap.com"
LABEL = f"{_PREFIX}/made-by"
LABEL_VALUE = "cp-backup"
SOURCE_NAMESPACE_ANNOTATION = f"{_PREFIX}/source-namespace"
SOURCE_NAME_ANNOTATION = f"{_PREFIX}/source-name"
SOURCE_UID_ANNOTATION = f"{_PREFIX}/source-uid"
SOURCE_RESOURCE_VERSION_ANNOTATION = f"{_PREFIX}/source-resource-version"
TIME_ANNOTATION = f"{_PREFIX}/time"
DIGEST_ANNOTATION = f"{_PREFIX}/digest"
OWN_ANNOTATIONS = (
    SOURCE_NAMESPACE_ANNOTATION,
    SOURCE_NAME_ANNOTATION,
    SOURCE_UID_ANNOTATION,
    SOURCE_RESOURCE_VERSION_ANNOTATION,
    TIME_ANNOTATION,
    DIGEST_ANNOTATION,
)
# On the CR, next to connectivityproxy.sap.com/backed-up: the sources that did not exist.
MISSING_SOURCES_ANNOTATION = "connectivityproxy.sap.com/backup-missing"


def digest_problem(backup: dict[str, Any]) -> str | None:
    """Why a backup cannot be trusted, or None when its content matches its recorded digest."""
    recorded = ((backup.get("metadata") or {}).get("annotations") or {}).get(DIGEST_ANNOTATION)
    if not recorded:
        return f"it has no {DIGEST_ANNOTATION} annotation"
    actual = content_digest(backup)
    if actual != recorded:
        return f"its content digest {actual} differs from the recorded {recorded}"
    return None


def format_missing(sources: list[str]) -> str:
    """The value of MISSING_SOURCES_ANNOTATION: the missing source names, comma-separated."""
    return ",".join(sources)


def parse_missing(value: str | None) -> list[str]:
    """The source names recorded in MISSING_SOURCES_ANNOTATION (none when it is unset)."""
    return [name.strip() for name in (value or "").split(",") if name.strip()]
