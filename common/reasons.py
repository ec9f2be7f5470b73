"""The record's reason codes (README "Fleet view", the table of reasons): stable CamelCase
names a fleet's alerts and dashboards group by. Each is defined here once; an error carries its
code in `reason` (common.errors), a step's attention note in its outcome."""

from __future__ import annotations

# done
COMPLETED = "Completed"
# attention: exit 0, but a person should look
ORPHANED_LEGACY_CONFIG = "OrphanedLegacyConfig"
BACKUP_INCOMPLETE = "BackupIncomplete"
# waiting: exit 1, a later run may get past it
NO_CUSTOM_RESOURCE = "NoCustomResource"
LEGACY_CONFIG_MISSING = "LegacyConfigMissing"
BACKUP_NAMESPACE_TERMINATING = "BackupNamespaceTerminating"
CLEANUP_WAITING = "CleanupWaiting"
FORBIDDEN = "Forbidden"
UNAUTHORIZED = "Unauthorized"
CONFLICT = "Conflict"
APISERVER_UNREACHABLE = "ApiserverUnreachable"
APISERVER_ERROR = "ApiserverError"
INTERRUPTED = "Interrupted"
UNEXPECTED_ERROR = "UnexpectedError"
RETRYABLE_FAILURE = "RetryableFailure"
# blocked: exit 3 (or 2), a person must act
SHARED_MODE_SECRET_MISSING = "SharedModeSecretMissing"
INVALID_CONFIGURATION = "InvalidConfiguration"
UNVERIFIED_BACKUP = "UnverifiedBackup"
CONFIG_CHANGED_AFTER_MIGRATION = "ConfigChangedAfterMigration"
NOT_MIGRATED = "NotMigrated"
NOT_BACKED_UP = "NotBackedUp"
CLEANUP_REFUSED = "CleanupRefused"
BACKUP_UNTRUSTED = "BackupUntrusted"
NO_BACKUP = "NoBackup"
RESTORE_CONFLICT = "RestoreConflict"
REFUSED = "Refused"
INVALID_USAGE = "InvalidUsage"

# Every code, in the README's order (a test checks the README's table against it).
ALL = (
    COMPLETED,
    ORPHANED_LEGACY_CONFIG,
    BACKUP_INCOMPLETE,
    NO_CUSTOM_RESOURCE,
    LEGACY_CONFIG_MISSING,
    BACKUP_NAMESPACE_TERMINATING,
    CLEANUP_WAITING,
    FORBIDDEN,
    UNAUTHORIZED,
    CONFLICT,
    APISERVER_UNREACHABLE,
    APISERVER_ERROR,
    INTERRUPTED,
    UNEXPECTED_ERROR,
    RETRYABLE_FAILURE,
    SHARED_MODE_SECRET_MISSING,
    INVALID_CONFIGURATION,
    UNVERIFIED_BACKUP,
    CONFIG_CHANGED_AFTER_MIGRATION,
    NOT_MIGRATED,
    NOT_BACKED_UP,
    CLEANUP_REFUSED,
    BACKUP_UNTRUSTED,
    NO_BACKUP,
    RESTORE_CONFLICT,
    REFUSED,
    INVALID_USAGE,
)
