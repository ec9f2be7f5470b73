"""What cp-status found, as typed, frozen data: one section per part of the migration.

A part the apiserver would not show (403, 500, ...) is an `Unreadable` in its place. A new
section is a field of `Status`, its type here, its reading in gather.py and its row (and JSON
key) in render.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from common.record import Record


@dataclass(frozen=True)
class Unreadable:
    """A part that could not be read: the apiserver's answer, reported in the part's place."""

    error: str
    status: int


@dataclass(frozen=True)
class Legacy:
    """The legacy installation's objects (each `kind namespace/name`)."""

    remaining: tuple[str, ...]  # not deleted yet (and not the module's)
    being_deleted: tuple[str, ...]  # of those remaining, the ones with a deletionTimestamp
    kept_by_module: tuple[str, ...]  # "object: why" for legacy names the module owns
    kinds_not_served: tuple[str, ...]  # legacy kinds this cluster does not serve

    @property
    def present(self) -> bool:
        return bool(self.remaining)


@dataclass(frozen=True)
class Crd:
    exists: bool


@dataclass(frozen=True)
class Cr:
    exists: bool
    being_deleted: bool = False
    state: str | None = None  # status.state, as the module's operator sets it
    migrated: bool = False
    backed_up: bool = False
    cleaned: bool = False
    # The legacy ConfigMaps the migrator left alone (no legacy installation), as it recorded.
    orphaned_legacy_config: str | None = None
    # Where the chain stands and why (README "Fleet view"); None: no step has run on it yet.
    record: Record | None = None


@dataclass(frozen=True)
class BackupItem:
    """The backup of one user-configuration ConfigMap, and whether its live original may go."""

    name: str
    present: bool
    being_deleted: bool = False
    problem: str | None = None  # why the backup is not a verified copy; None: it is
    live_exists: bool = False  # the live ConfigMap still exists
    not_safe: str | None = None  # why the live ConfigMap must not be deleted yet
    missing_at_backup: bool = False  # absent, and the CR records it missing at backup time

    @property
    def verified(self) -> bool:
        return self.present and self.problem is None


@dataclass(frozen=True)
class PreservedCopy:
    """A copy in the backup namespace that cp-backup did not make, kept as found."""

    name: str
    copy_of: str | None
    reason: str | None


@dataclass(frozen=True)
class Backup:
    namespace_exists: bool
    terminating: bool
    items: tuple[BackupItem, ...]
    preserved: tuple[PreservedCopy, ...] = ()

    @property
    def present(self) -> bool:
        return any(item.present for item in self.items)

    @property
    def verified(self) -> bool:
        present = [item for item in self.items if item.present]
        return bool(present) and all(item.verified for item in present)


@dataclass(frozen=True)
class ServiceMappings:
    crd_exists: bool
    crd_being_deleted: bool = False
    crd_handed_over: bool = False
    scope: str | None = None
    total: int = 0
    handed_over: int = 0
    being_deleted: int = 0

    @property
    def not_handed_over(self) -> int:
        return self.total - self.handed_over


@dataclass(frozen=True)
class Operator:
    exists: bool
    being_deleted: bool = False


@dataclass(frozen=True)
class Status:
    legacy: Legacy | Unreadable
    crd: Crd | Unreadable
    cr: Cr | Unreadable
    backup: Backup | Unreadable
    service_mappings: ServiceMappings | Unreadable
    operator: Operator | Unreadable

    @property
    def readable(self) -> bool:
        """Whether any part could be read at all (cp-status exits 1 when none could)."""
        return any(
            not isinstance(getattr(self, part.name), Unreadable)
            for part in dataclasses.fields(self)
        )
