"""A backup ConfigMap as cp-backup writes it, hand-made for pure units that read one."""

from __future__ import annotations

import copy
from typing import Any

from common import kyma
from common.backups import content_digest


def backup_copy(name: str, source: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    """The backup of kyma-system/<name> whose content is `source`'s: its label, provenance
    and digest; `metadata` adds to (or replaces) what the backup's metadata holds."""
    return {
        "metadata": {
            "name": name,
            "namespace": kyma.BACKUP_NAMESPACE,
            "labels": {kyma.BACKUP_LABEL: kyma.BACKUP_LABEL_VALUE},
            "annotations": {
                kyma.SOURCE_NAMESPACE_ANNOTATION: kyma.NAMESPACE,
                kyma.SOURCE_NAME_ANNOTATION: name,
                kyma.BACKUP_DIGEST_ANNOTATION: content_digest(source),
            },
            **metadata,
        },
        "data": copy.deepcopy(source.get("data")),
    }
