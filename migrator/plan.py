"""Pure planning of the migration: cluster data in, intended change out. No I/O here.

The order of a run: observe reads `Inputs`; `choose_source` picks where the configuration
comes from (once); `prepared` parses the user configuration (once) into the inputs; `reads`
names the Secrets to look up; `plan` computes the change from all of that.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from common import backups, kyma, legacy, reasons
from common.backups import content_digest
from common.cr import annotations_of
from common.errors import RefusedError, RetryableError
from migrator.config_yaml import FieldPath, InvalidConfiguration, Parsed, parse_yaml_document

CONFIG_KEY = kyma.CONFIG_KEY
CONFIG_NAME = kyma.CONFIGMAP
INFO_NAME = kyma.INFO_CONFIGMAP
CONFIG_MAP = kyma.ref(kyma.NAMESPACE, CONFIG_NAME)
INFO_MAP = kyma.ref(kyma.NAMESPACE, INFO_NAME)
# The Secret a shared-mode cluster has, in the order they are looked for when no name is
# given: the module CRD's default (and the original Go migrator's), then the name an early
# README gave.
SERVICE_KEY_SECRETS = ("connectivity-proxy-service-key", "connectivity-service-service-key")
TENANT_MODES = ("dedicated", "shared")
ORPHANED_ANNOTATION = kyma.ANNOTATION_ORPHANED

# Where the configuration is migrated from.
FROM_LEGACY = "legacy"  # the live ConfigMaps of a legacy installation
FROM_LEFTOVER = "leftover"  # live ConfigMaps whose installation a cleaner removed already
FROM_BACKUP = "backup"  # the backups (the legacy ConfigMaps are gone: a recreated CR)
ORPHANED = "orphaned"  # live ConfigMaps, no installation, nothing says they are current
NOTHING = "nothing"  # no legacy configuration anywhere: a new installation of the module

# connectivity-proxy-info key -> path under spec.config
PORTS = kyma.PORTS
SECRET_NAME_PATH = ("secretConfig", "integration", "connectivityService", "secretName")
_PORT = re.compile(r"[0-9]{1,5}")


class _Missing:
    def __repr__(self) -> str:
        return "<unset>"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Inputs:
    """What `observe` read; plain data only."""

    cr: dict[str, Any]
    config_map: dict[str, Any] | None
    info_map: dict[str, Any] | None
    # The Secret named by --service-key-secret; None: look for SERVICE_KEY_SECRETS.
    service_key_secret: str | None = None
    # Secret name -> whether it exists; empty until looked up (only shared mode needs it).
    secrets_found: dict[str, bool] = field(default_factory=dict)
    # The legacy StatefulSet's metadata (None: absent), and the backups by source name.
    statefulset: dict[str, Any] | None = None
    backups: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    # spec's schema in the CR's CRD (None: unknown): which fields hold text.
    spec_schema: dict[str, Any] | None = None
    migrate_orphaned: bool = False
    # Set by `prepared`: where the configuration comes from, and (when it migrates) the user
    # configuration parsed from it. Everything after reads these; nothing parses again.
    source: Source | None = None
    config: Parsed | None = None


@dataclass(frozen=True)
class Change:
    path: str
    old: Any
    new: Any
    reason: str


@dataclass(frozen=True)
class Source:
    """Where the configuration comes from, and why."""

    kind: str
    reason: str
    config_map: dict[str, Any] | None = None
    info_map: dict[str, Any] | None = None

    @property
    def migrates(self) -> bool:
        return self.kind in (FROM_LEGACY, FROM_LEFTOVER, FROM_BACKUP)

    @property
    def config_ref(self) -> str:
        return ref_of(self.config_map, CONFIG_MAP)

    @property
    def info_ref(self) -> str:
        return ref_of(self.info_map, INFO_MAP)


@dataclass(frozen=True)
class Plan:
    spec_before: dict[str, Any]
    spec_after: dict[str, Any]
    changes: list[Change] = field(default_factory=list)
    patch: dict[str, Any] = field(default_factory=dict)
    # Fields whose YAML value was taken as its source text, with that text.
    as_text: list[tuple[str, str]] = field(default_factory=list)
    secret_name: str | None = None


def ref_of(configmap: dict[str, Any] | None, default: str) -> str:
    meta = (configmap or {}).get("metadata") or {}
    return f"{meta['namespace']}/{meta['name']}" if meta.get("name") else default


def _usable_backup(backup: dict[str, Any] | None, name: str) -> tuple[bool, str | None]:
    """(usable, why not trusted): a verified cp-backup copy, or a copy another tool made (the
    original backup.sh, a person) that carries no cp-backup digest to check. A cp-backup copy
    whose digest does not verify was changed after it was made: not usable."""
    if backup is None:
        return False, None
    if not backups.is_ours(backup):
        return True, "made by another tool, no digest to verify"
    problem = backups.backup_problem(backup, name)
    return problem is None, problem


def choose_source(inputs: Inputs) -> Source:
    """Which configuration to migrate, if any. The live ConfigMaps win while the legacy
    installation runs; without it they are migrated only when a backup of ours shows that this
    cluster's chain saw them (a cleaner removed the rest), otherwise they are left alone
    (orphaned) unless asked; with no live ConfigMap the backups are the configuration (the CR
    was recreated after the legacy installation was removed)."""
    config, info = inputs.config_map, inputs.info_map
    if legacy.installation_present(inputs.statefulset):
        return _from_legacy(inputs)
    gone = legacy.describe(inputs.statefulset)
    if config is not None:
        ours = [
            name
            for name in (CONFIG_NAME, INFO_NAME)
            if (b := inputs.backups.get(name)) is not None
            and backups.backup_problem(b, name) is None
        ]
        if ours:
            why = "its ConfigMaps remain and cp-backup copied them before (an interrupted clean-up)"
        elif kyma.MIGRATED_DIGESTS_ANNOTATION in annotations_of(inputs.cr):
            why = (
                "its ConfigMaps remain and this CR was migrated from them before (its marks "
                "were removed to migrate them again)"
            )
        elif inputs.migrate_orphaned:
            why = "its ConfigMaps remain; migrating them as asked"
        else:
            return Source(ORPHANED, f"{gone}, but legacy ConfigMaps remain")
        found, taken = _fill_from_backups(inputs)
        if found[CONFIG_NAME] is None:
            return Source(ORPHANED, f"{gone}; only {INFO_MAP} remains")
        reason = f"{gone}, but {why}" + (f"; from the backup: {', '.join(taken)}" if taken else "")
        return Source(FROM_LEFTOVER, reason, found[CONFIG_NAME], found[INFO_NAME])
    # No live configuration: the backups hold it, if anything does (a live ConfigMap of ports
    # is still the current one).
    usable: dict[str, dict[str, Any]] = {}
    for name, live in ((CONFIG_NAME, None), (INFO_NAME, info)):
        backup = inputs.backups.get(name)
        if live is not None or backup is None:
            continue
        ok, problem = _usable_backup(backup, name)
        if not ok:
            where = kyma.ref(kyma.BACKUP_NAMESPACE, name)
            raise RefusedError(
                f"ConnectivityProxy {kyma.CR_REF} is not migrated, the "
                f"legacy ConfigMaps are gone, and the configuration survives only in ConfigMap "
                f"{where}, which cannot be verified: {problem}. If its content is what you "
                f"want, mark it as a copy made by hand: kubectl label configmap -n "
                f"{kyma.BACKUP_NAMESPACE} {name} {kyma.BACKUP_LABEL}- ; the next run migrates "
                "from it",
                reason=reasons.UNVERIFIED_BACKUP,
            )
        usable[name] = backup
    if CONFIG_NAME in usable:
        return Source(
            FROM_BACKUP,
            f"{gone} and the legacy ConfigMaps are gone; the backups hold the configuration "
            "(the CR was created again after the migration)",
            usable[CONFIG_NAME],
            info if info is not None else usable.get(INFO_NAME),
        )
    if info is not None:
        return Source(ORPHANED, f"{gone}; only {INFO_MAP} remains")
    return Source(NOTHING, f"{gone} and no legacy configuration exists")


def _fill_from_backups(
    inputs: Inputs,
) -> tuple[dict[str, dict[str, Any] | None], list[str]]:
    """The live ConfigMaps, each missing one taken from its backup when that is usable; and
    the backups so taken."""
    found: dict[str, dict[str, Any] | None] = {}
    taken: list[str] = []
    for name, live in ((CONFIG_NAME, inputs.config_map), (INFO_NAME, inputs.info_map)):
        backup = inputs.backups.get(name)
        if live is None and backup is not None and _usable_backup(backup, name)[0]:
            found[name] = backup
            taken.append(kyma.ref(kyma.BACKUP_NAMESPACE, name))
        else:
            found[name] = live
    return found, taken


def _from_legacy(inputs: Inputs) -> Source:
    """The running legacy installation's ConfigMaps; one that is missing is taken from its
    backup when there is a usable one."""
    found, taken = _fill_from_backups(inputs)
    missing = [
        kyma.ref(kyma.NAMESPACE, name) for name, configmap in found.items() if configmap is None
    ]
    running = legacy.describe(inputs.statefulset)
    if missing:
        raise RetryableError(
            f"{running}, but its ConfigMap {' and '.join(missing)} is missing, so there is no "
            "complete configuration to migrate; nothing was changed. The Kyma reconciler "
            "installs it again on its next reconciliation, and a later run migrates it then. If "
            "the legacy installation is gone for good, delete its StatefulSet "
            f"({legacy.STATEFULSET_REF}); then there is nothing to migrate",
            reason=reasons.LEGACY_CONFIG_MISSING,
        )
    reason = running + (f"; from the backup: {', '.join(taken)}" if taken else "")
    return Source(FROM_LEGACY, reason, found[CONFIG_NAME], found[INFO_NAME])


def user_config(
    config_map: dict[str, Any] | None, spec_schema: dict[str, Any] | None = None
) -> Parsed:
    """The user's configuration from the legacy ConfigMap (or its backup), or a refusal
    naming what is wrong: its data, the fields whose YAML value is taken as its text, and
    the plain scalars the YAML 1.1 warnings look at."""
    where = ref_of(config_map, CONFIG_MAP)
    if config_map is None:
        raise InvalidConfiguration(
            f"ConfigMap {where} is missing: there is no configuration to migrate"
        )
    data = config_map.get("data") or {}
    if CONFIG_KEY not in data:
        if CONFIG_KEY in (config_map.get("binaryData") or {}):
            raise InvalidConfiguration(
                f"ConfigMap {where}: key {CONFIG_KEY} is under binaryData; "
                "the legacy component reads it from data"
            )
        keys = ", ".join(sorted(data)) or "none"
        raise InvalidConfiguration(f"ConfigMap {where} has no key {CONFIG_KEY} (keys: {keys})")
    config_schema = ((spec_schema or {}).get("properties") or {}).get("config")
    return parse_yaml_document(
        data[CONFIG_KEY],
        f"ConfigMap {where} key {CONFIG_KEY}",
        (lambda path: schema_type(config_schema, path) == "string") if config_schema else None,
    )


def schema_node(schema: dict[str, Any] | None, path: FieldPath) -> dict[str, Any] | None:
    """The schema of the field at `path`, or None when the schema does not describe it."""
    node = schema or {}
    for key in path:
        if node.get("type") == "array" or key == "[]":
            node = node.get("items") or {}
            continue
        properties = node.get("properties") or {}
        if key in properties:
            node = properties[key]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
    return node


def schema_type(schema: dict[str, Any] | None, path: FieldPath) -> str | None:
    """The OpenAPI type the schema gives the field at `path`, or None when it gives none
    (unknown field, int-or-string, preserved unknown fields)."""
    found = (schema_node(schema, path) or {}).get("type")
    return str(found) if found else None


def ports(info_map: dict[str, Any] | None) -> dict[str, int]:
    """The three on-premise proxy ports, each a decimal integer from 1 to 65535."""
    where = ref_of(info_map, INFO_MAP)
    if info_map is None:
        raise InvalidConfiguration(
            f"ConfigMap {where} is missing: the proxy ports cannot be migrated"
        )
    data = info_map.get("data") or {}
    found: dict[str, int] = {}
    problems: list[str] = []
    for key in PORTS:
        raw = data.get(key)
        if raw is None:
            problems.append(f"key {key} is missing")
        elif not isinstance(raw, str) or not _PORT.fullmatch(raw) or not 1 <= int(raw) <= 65535:
            problems.append(f"key {key}: {raw!r} is not a port (a decimal integer, 1 to 65535)")
        else:
            found[key] = int(raw)
    if problems:
        raise InvalidConfiguration(f"ConfigMap {where}: invalid ports", details=problems)
    return found


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key with `override` winning; anything else (lists) is replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def tenant_mode(cr: dict[str, Any], config: dict[str, Any], where: str = CONFIG_MAP) -> str:
    spec_config = ((cr.get("spec") or {}).get("config")) or {}
    mode = config.get("tenantMode", spec_config.get("tenantMode", "dedicated"))
    if mode not in TENANT_MODES:
        raise InvalidConfiguration(
            f"ConfigMap {where} key {CONFIG_KEY}: tenantMode {mode!r} is unknown "
            f"(expected one of {', '.join(TENANT_MODES)})"
        )
    return str(mode)


def prepared(inputs: Inputs, source: Source | None = None) -> Inputs:
    """The inputs with their source (`source`, else choose_source) and, when it migrates, its
    user configuration parsed. Inputs already prepared (for that source) are returned as
    they are: a run chooses and parses once."""
    if inputs.source is not None and source in (None, inputs.source):
        return inputs
    source = source or choose_source(inputs)
    config = user_config(source.config_map, inputs.spec_schema) if source.migrates else None
    return dataclasses.replace(inputs, source=source, config=config)


def _chosen(inputs: Inputs) -> tuple[Source, Parsed | None]:
    inputs = prepared(inputs)
    assert inputs.source is not None
    return inputs.source, inputs.config


def reads(inputs: Inputs) -> tuple[str, ...]:
    """The service-key Secrets to look up before planning, in order, up to the first that
    exists (shared tenant mode only; `secrets_found` then says which exist)."""
    source, config = _chosen(inputs)
    if config is None:
        return ()
    if tenant_mode(inputs.cr, config.data, source.config_ref) != "shared":
        return ()
    return (inputs.service_key_secret,) if inputs.service_key_secret else SERVICE_KEY_SECRETS


def _secret_name(inputs: Inputs) -> str:
    candidates = reads(inputs)
    for name in candidates:  # looked up in this order, up to the first that exists
        if name not in inputs.secrets_found:
            raise AssertionError("shared mode is planned only after the Secrets were looked up")
        if inputs.secrets_found[name]:
            return name
    looked = " nor ".join(kyma.ref(kyma.NAMESPACE, name) for name in candidates)
    raise RefusedError(
        f"tenantMode is shared, but neither Secret {looked} exists"
        if len(candidates) > 1
        else f"tenantMode is shared, but Secret {looked} does not exist",
        details=[
            "create the Secret with the Connectivity service key, or name the one the cluster "
            "has with --service-key-secret (CP_SERVICE_KEY_SECRET); the next run picks it up"
        ],
        reason=reasons.SHARED_MODE_SECRET_MISSING,
    )


def plan(inputs: Inputs, source: Source | None = None) -> Plan:
    """The CR's new spec and the one patch that writes it with the marks, from prepared
    inputs (else they are prepared here, for `source` when given). The source must be one
    that migrates."""
    inputs = prepared(inputs, source)
    source, parsed = _chosen(inputs)
    if parsed is None:
        raise AssertionError(f"nothing to plan: {source.reason}")
    config, as_text = parsed.data, parsed.as_text
    # Without a legacy installation, a ConfigMap of ports that is gone everywhere (the backup
    # recorded it missing) leaves the CR's ports as they are; a running one must have it.
    found_ports = ports(source.info_map) if source.info_map or source.kind == FROM_LEGACY else {}
    mode = tenant_mode(inputs.cr, config, source.config_ref)
    spec_before = copy.deepcopy(inputs.cr.get("spec") or {})
    current_config = spec_before.get("config") or {}

    new_config = deep_merge(current_config, config)
    reasons: dict[str, str] = {}
    for path in _leaf_paths(config):
        reasons[_dotted(("config", *path))] = f"set in {source.config_ref}"
    texts = [(_dotted(("spec", "config", *path)), text) for path, text in as_text]
    for path, text in as_text:
        reasons[_dotted(("config", *path))] = (
            f"set in {source.config_ref} (YAML reads {text} as a non-string; the CRD wants "
            "text, so its exact text is kept)"
        )
    for key, path in PORTS.items():
        if key not in found_ports:
            continue
        _set(new_config, path, found_ports[key])
        reasons[_dotted(("config", *path))] = f"{source.info_ref} key {key}"

    spec_after = copy.deepcopy(spec_before)
    spec_after["config"] = new_config
    spec_patch: dict[str, Any] = {"config": new_config}
    secret_name = None
    if mode == "shared":
        secret_name = _secret_name(inputs)
        _set(spec_after, SECRET_NAME_PATH, secret_name)
        _set(spec_patch, SECRET_NAME_PATH, secret_name)
        reasons[_dotted(SECRET_NAME_PATH)] = (
            f"tenantMode shared uses the service-key Secret {kyma.ref(kyma.NAMESPACE, secret_name)}"
        )

    changes = [
        Change(path=f"spec.{path}", old=old, new=new, reason=reasons.get(path, "merged"))
        for path, old, new in _differences(spec_before, spec_after, ())
    ]
    digests = {
        name: content_digest(configmap)
        for name, configmap in ((CONFIG_NAME, source.config_map), (INFO_NAME, source.info_map))
        if configmap is not None
    }
    annotations: dict[str, str | None] = {
        kyma.ANNOTATION_MIGRATED: "true",
        kyma.MIGRATED_DIGESTS_ANNOTATION: backups.format_digests(digests),
    }
    if ORPHANED_ANNOTATION in annotations_of(inputs.cr):
        annotations[ORPHANED_ANNOTATION] = None  # a merge patch's null removes it
    patch = {
        "metadata": {
            "resourceVersion": inputs.cr["metadata"]["resourceVersion"],
            "annotations": annotations,
        },
        "spec": spec_patch,
    }
    return Plan(
        spec_before=spec_before,
        spec_after=spec_after,
        changes=changes,
        patch=patch,
        as_text=texts,
        secret_name=secret_name,
    )


def replaced_values(plan: Plan, spec_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The values of the CR's spec.config that the migration replaces with different ones, as
    they were (nested under their spec.config paths): what a person set there before the
    migration. No one's values: the module's placeholder (`auto-provision`) and a field's
    default in the CRD (`spec_schema`), which the module's CR or the apiserver filled in."""
    found: dict[str, Any] = {}
    prefix = "spec.config."
    config_schema = ((spec_schema or {}).get("properties") or {}).get("config")
    for change in plan.changes:
        if not change.path.startswith(prefix) or change.old is MISSING:
            continue
        if change.old == backups.PLACEHOLDER or change.new is MISSING:
            continue
        node = schema_node(config_schema, tuple(change.path[len(prefix) :].split(".")))
        if node is not None and "default" in node and node["default"] == change.old:
            continue
        _set(found, tuple(change.path[len(prefix) :].split(".")), copy.deepcopy(change.old))
    return found


def orphaned_value(inputs: Inputs) -> str:
    """The value of ORPHANED_ANNOTATION: the legacy ConfigMaps that were left alone."""
    return ",".join(
        ref_of(configmap, default)
        for configmap, default in ((inputs.config_map, CONFIG_MAP), (inputs.info_map, INFO_MAP))
        if configmap is not None
    )


def orphaned_patch(inputs: Inputs) -> dict[str, Any] | None:
    """The CR annotation that records orphaned legacy ConfigMaps, or None when it is there."""
    value = orphaned_value(inputs)
    if annotations_of(inputs.cr).get(ORPHANED_ANNOTATION) == value:
        return None
    return {
        "metadata": {
            "resourceVersion": inputs.cr["metadata"]["resourceVersion"],
            "annotations": {ORPHANED_ANNOTATION: value},
        }
    }


def _set(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        child = target.get(key)
        if not isinstance(child, dict):
            child = target[key] = {}
        target = child
    target[path[-1]] = value


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path)


def _leaf_paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(value, dict) and value:
        return [p for key, item in value.items() for p in _leaf_paths(item, (*prefix, key))]
    return [prefix]


def _differences(before: Any, after: Any, path: tuple[str, ...]) -> list[tuple[str, Any, Any]]:
    if before is MISSING and isinstance(after, dict) and after:
        before = {}
    if after is MISSING and isinstance(before, dict) and before:
        after = {}
    if isinstance(before, dict) and isinstance(after, dict):
        found: list[tuple[str, Any, Any]] = []
        for key in sorted(set(before) | set(after)):
            found += _differences(before.get(key, MISSING), after.get(key, MISSING), (*path, key))
        return found
    if before == after and type(before) is type(after):
        return []
    return [(_dotted(path), before, after)]
