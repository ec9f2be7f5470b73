"""The migrator step: observe -> plan -> apply -> mark (the mark rides in the same write)."""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from typing import Any

from common import backups, diff, kyma, legacy, reasons, redact
from common.backups import content_digest
from common.cluster.client import METADATA_ONLY, Kube, configmap_path, resource_path
from common.cr import CR_PATH, CRD_PATH, MIGRATE_ORPHANED_HINT, get_cr, is_marked, record_event
from common.errors import ApiError, RefusedError, RejectedWrite, RetryableError
from common.logs import fields
from common.retry import replan_on_conflict
from migrator import plan as planning
from migrator.config_yaml import Parsed, yaml11_warnings

log = logging.getLogger("migrator")

STATEFULSET_PATH = resource_path("apps", "v1", "statefulsets", kyma.NAMESPACE, kyma.STATEFULSET)


_STRICT_DECODING = "strict decoding error: "
_FIELD_PROBLEM = re.compile(r'(unknown|duplicate) field "([^"]+)"')
MAX_MESSAGE_CHARS = 500


@dataclass(frozen=True)
class Settings:
    dry_run: bool = False
    # None: the Secret the cluster has, of planning.SERVICE_KEY_SECRETS.
    service_key_secret: str | None = None
    migrate_orphaned: bool = False


@dataclass(frozen=True)
class Outcome:
    summary: str
    diff: str = ""
    changed: bool = False
    # Done, and yet a person should look: the reason code (common.reasons), else None.
    attention: str | None = None


def migrate(kube: Kube, settings: Settings) -> Outcome:
    return replan_on_conflict(lambda: _attempt(kube, settings), log=log, what=kyma.CR_REF)


def _attempt(kube: Kube, settings: Settings) -> Outcome:
    cr_name = kyma.CR_REF
    cr = get_cr(kube)
    if cr is None:
        raise RetryableError(
            f"ConnectivityProxy {cr_name} does not exist yet (or its CRD is not installed); "
            "the module creates it, so a later run will find it",
            reason=reasons.NO_CUSTOM_RESOURCE,
        )
    if is_marked(cr, kyma.ANNOTATION_MIGRATED):
        log.info("already migrated; nothing to do", extra=fields(object=cr_name))
        drifted = _drift(kube, cr) if settings.dry_run else ""
        return Outcome(summary=f"nothing to do: {cr_name} is already migrated{drifted}")

    found = _observe(kube, cr, settings)
    source = planning.choose_source(found)  # once a run
    log.info(source.reason, extra=fields(object=cr_name, source=source.kind))
    if source.kind == planning.NOTHING:
        return Outcome(summary="nothing to do: no legacy Connectivity Proxy configuration")
    if source.kind == planning.ORPHANED:
        return _record_orphaned(kube, found, settings)

    inputs = planning.prepared(found, source)  # the one parse of the user configuration
    assert inputs.config is not None
    redact.remember_credentials(inputs.config.data)
    plan = planning.plan(_with_secrets(kube, inputs))
    _warn_yaml11(source, inputs.config, plan.spec_after)
    for path, text in plan.as_text:
        log.info(
            f"{path}: the CRD wants text; kept the YAML value as its exact text {text!r}",
            extra=fields(object=source.config_ref, field=path),
        )
    for change in plan.changes:
        log.info(
            f"{change.path}: {change.reason}",
            extra=fields(object=cr_name, field=change.path),
        )

    _validate_on_server(kube, plan.patch)
    rendered = diff.unified(
        {"spec": plan.spec_before},
        {"spec": plan.spec_after},
        f"{cr_name} (now)",
        f"{cr_name} (migrated)",
    )
    replaced = planning.replaced_values(plan, inputs.spec_schema)
    record_ref = kyma.ref(kyma.BACKUP_NAMESPACE, kyma.CR_VALUES_CONFIGMAP)
    if settings.dry_run:
        keeps = f", keeping the values it replaces in ConfigMap {record_ref}" if replaced else ""
        return Outcome(
            summary=f"dry run: would change {len(plan.changes)} field(s) of {cr_name} and mark it "
            f"migrated{keeps}",
            diff=rendered,
        )
    kept = _keep_cr_values(kube, replaced, found.cr) if replaced else ""

    updated = kube.merge_patch(CR_PATH, plan.patch, retry_safe=True, fieldValidation="Strict")
    log.info(
        "migrated and marked",
        extra=fields(object=cr_name, changes=len(plan.changes), source=source.config_ref),
    )
    origin = (
        f"from its backup {source.config_ref} (the legacy ConfigMaps are gone)"
        if source.kind == planning.FROM_BACKUP
        else f"from {source.config_ref}"
    )
    record_event(
        kube,
        updated,
        "Migrated",
        f"cp-migrator moved the legacy configuration into the CR {origin} "
        f"({len(plan.changes)} field(s)){kept}",
        "cp-migrator",
    )
    return Outcome(
        summary=f"migrated {cr_name}: {len(plan.changes)} field(s) changed, marked migrated",
        diff=rendered,
        changed=True,
    )


def _keep_cr_values(kube: Kube, values: dict[str, Any], cr: dict[str, Any]) -> str:
    """Before the CR is written: keep the values of its spec.config that the migration replaces
    (a person set them) in the backup namespace, read back and verified. A record kept by an
    earlier run stays: it holds the values from before the first migration. Returns the words
    the Event adds."""
    import datetime

    ref = kyma.ref(kyma.BACKUP_NAMESPACE, kyma.CR_VALUES_CONFIGMAP)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    record = backups.cr_values_record(values, cr, now)
    path = configmap_path(kyma.BACKUP_NAMESPACE, kyma.CR_VALUES_CONFIGMAP)
    existing = kube.get(path)
    if existing is None:
        stored = _create_record(kube, record, ref)
        problem = "it is missing" if stored is None else backups.cr_values_problem(stored)
        if problem:
            raise RetryableError(
                f"ConfigMap {ref}, which keeps the CR's values the migration replaces, does not "
                f"verify after writing it ({problem}); the CR is unchanged"
            )
        verb = "kept"
    else:
        verb = "already kept (an earlier run's record stays)"
    paths = sorted(".".join(("spec.config", *p)) for p in _paths(values))
    log.warning(
        f"the migration replaces {len(paths)} value(s) set in the CR before it; {verb} in "
        f"ConfigMap {ref} (cp-restore --cr-values shows them and puts them back on request)",
        extra=fields(object=ref, fields=", ".join(paths)),
    )
    return f"; the {len(paths)} value(s) it replaced are kept in ConfigMap {ref}"


def _create_record(kube: Kube, record: dict[str, Any], ref: str) -> dict[str, Any] | None:
    """Create the record; the answer is the object as stored (verified without another read).
    deploy/ creates the backup namespace; when it is absent it is created here, given the
    permission (as cp-backup does)."""
    collection = configmap_path(kyma.BACKUP_NAMESPACE)
    for attempt in (1, 2):
        try:
            return kube.create(collection, record)
        except ApiError as err:
            if err.status == 409:
                return kube.get(configmap_path(kyma.BACKUP_NAMESPACE, kyma.CR_VALUES_CONFIGMAP))
            if err.status == 403 and "being terminated" in err.api_message:
                raise RetryableError(
                    f"namespace {kyma.BACKUP_NAMESPACE} is being deleted (Terminating), so the "
                    f"CR's values the migration replaces cannot be kept in {ref} yet; the CR is "
                    "unchanged, and a later run goes on once it is gone"
                ) from err
            if err.status != 404 or attempt == 2:
                raise
        try:
            kube.create(
                resource_path("", "v1", "namespaces"),
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": kyma.BACKUP_NAMESPACE},
                },
            )
        except ApiError as err:
            if err.status != 409:
                raise
    raise AssertionError("unreachable")


def _paths(tree: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(tree, dict) and tree:
        return [p for key, value in tree.items() for p in _paths(value, (*prefix, str(key)))]
    return [prefix]


def _drift(kube: Kube, cr: dict[str, Any]) -> str:
    """For --dry-run of a migrated CR: the legacy ConfigMaps that changed since, with what
    changed (as cp-backup and cp-cleaner show it when they refuse over it)."""
    found = []
    for name in kyma.SOURCES:
        live = kube.get(configmap_path(kyma.NAMESPACE, name))
        migrated = backups.migrated_digest(cr, name)
        if live is None:
            continue
        problem = backups.drift_problem(
            migrated, content_digest(live), backups.drift_diff(cr, live)
        )
        if problem is None:
            continue
        found.append(f"\n  - ConfigMap {kyma.NAMESPACE}/{name}: {problem}")
    if not found:
        return ""
    return (
        "; but the legacy configuration changed after it was migrated (cp-backup and "
        "cp-cleaner refuse until a person decides; their message names the remedies):"
        + "".join(found)
    )


def _observe(kube: Kube, cr: dict[str, Any], settings: Settings) -> planning.Inputs:
    """Reads what choosing the source and planning need. The backups are read only when the
    live ConfigMaps may not be the whole story (no legacy installation, or one missing)."""
    statefulset = kube.get(STATEFULSET_PATH, accept=METADATA_ONLY)
    config_map = kube.get(configmap_path(kyma.NAMESPACE, planning.CONFIG_NAME))
    info_map = kube.get(configmap_path(kyma.NAMESPACE, planning.INFO_NAME))
    found_backups: dict[str, dict[str, Any] | None] = {}
    if not legacy.installation_present(statefulset) or config_map is None or info_map is None:
        found_backups = {
            name: kube.get(configmap_path(kyma.BACKUP_NAMESPACE, name)) for name in kyma.SOURCES
        }
    crd = kube.get(CRD_PATH)
    return planning.Inputs(
        cr=cr,
        config_map=config_map,
        info_map=info_map,
        service_key_secret=settings.service_key_secret,
        statefulset=statefulset,
        backups=found_backups,
        spec_schema=_spec_schema(crd),
        migrate_orphaned=settings.migrate_orphaned,
    )


def _spec_schema(crd: dict[str, Any] | None) -> dict[str, Any] | None:
    """The schema of `spec` in the CRD's version v1 (which fields the CRD types as text)."""
    for version in ((crd or {}).get("spec") or {}).get("versions") or []:
        if version.get("name") == kyma.VERSION:
            schema = (version.get("schema") or {}).get("openAPIV3Schema") or {}
            spec = (schema.get("properties") or {}).get("spec")
            return spec if isinstance(spec, dict) else None
    return None


def _with_secrets(kube: Kube, inputs: planning.Inputs) -> planning.Inputs:
    """Shared tenant mode: which of the service-key Secrets plan.reads names exist (metadata
    only: the tool never needs, and so never holds, their values). Stops at the first found."""
    found: dict[str, bool] = {}
    for name in planning.reads(inputs):
        path = resource_path("", "v1", "secrets", kyma.NAMESPACE, name)
        found[name] = kube.get(path, accept=METADATA_ONLY) is not None
        if found[name]:
            break
    return dataclasses.replace(inputs, secrets_found=found)


def _record_orphaned(kube: Kube, inputs: planning.Inputs, settings: Settings) -> Outcome:
    """Legacy ConfigMaps without a legacy installation: they may be stale, so the CR is not
    overwritten from them and the operator is not blocked; the CR says so, and the run ends
    with `attention` (its record and Warning Event: common.record)."""
    cr_name = kyma.CR_REF
    found = planning.orphaned_value(inputs)
    message = (
        f"legacy ConfigMaps {found} exist without a legacy installation; they were left alone "
        f"and the CR was not changed. If they hold the configuration you want, "
        f"{MIGRATE_ORPHANED_HINT}"
    )
    log.warning(message, extra=fields(object=cr_name))
    patch = planning.orphaned_patch(inputs)
    if settings.dry_run or patch is None:
        return Outcome(
            summary=f"nothing migrated: {message}", attention=reasons.ORPHANED_LEGACY_CONFIG
        )
    kube.merge_patch(CR_PATH, patch, retry_safe=True)
    return Outcome(
        summary=f"nothing migrated: {message}",
        changed=True,
        attention=reasons.ORPHANED_LEGACY_CONFIG,
    )


def _warn_yaml11(source: planning.Source, config: Parsed, spec_after: dict[str, Any]) -> None:
    """A YAML 1.1 reading the text does not suggest (`1:20` = 80, `0755` = 493, `off` = false)
    is logged with the field and the value taken (migrator.config_yaml), from the one parse;
    a field taken as its text (plan.as_text) is no surprise."""
    for warning in yaml11_warnings(config, taken=spec_after.get("config")):
        log.warning(
            warning.message,
            extra=fields(object=source.config_ref, key=planning.CONFIG_KEY, field=warning.path),
        )


def _validate_on_server(kube: Kube, patch: dict[str, Any]) -> None:
    """Server-side dry run with strict field validation: an unknown field is an error here,
    not something the CRD schema silently prunes."""
    try:
        kube.merge_patch(CR_PATH, patch, retry_safe=True, dryRun="All", fieldValidation="Strict")
    except ApiError as err:
        if err.status not in (400, 422) or (isinstance(err, RejectedWrite) and err.policy):
            raise  # an admission policy's denial names the policy, not the configuration
        problems: list[str] = []
        for cause in _causes(err.body):
            message = cause.get("message", "")
            if _STRICT_DECODING in message:
                problems += _strict_decoding_problems(message)
            else:
                problems.append(f"{cause.get('field') or '?'}: {_shortened(message)}".strip())
        problems = problems or _strict_decoding_problems(err.api_message)
        raise RefusedError(
            f"ConnectivityProxy {kyma.CR_REF}: the apiserver rejects the "
            f"migrated configuration (from ConfigMap {planning.CONFIG_MAP} key "
            f"{planning.CONFIG_KEY}); the CR is unchanged",
            details=problems,
            reason=reasons.INVALID_CONFIGURATION,
        ) from err


def _causes(status: dict[str, Any]) -> list[dict[str, str]]:
    """The field-level causes of a 422 Invalid answer (or a strict-validation 400)."""
    details = status.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    if not isinstance(causes, list):
        return []
    return [{str(k): str(v) for k, v in c.items()} for c in causes if isinstance(c, dict)]


def _strict_decoding_problems(message: str) -> list[str]:
    """The field paths of a strict-decoding refusal. The apiserver's message quotes the whole
    merged object first, every configuration value and the CR's managedFields included: up to
    a megabyte of noise in the log, and values a person may not expect there. Keep the fields."""
    _, marker, tail = message.rpartition(_STRICT_DECODING)
    if marker:
        found = [f"{path}: {kind} field" for kind, path in _FIELD_PROBLEM.findall(tail)]
        if found:
            return found
        message = tail
    return [_shortened(message)]


def _shortened(message: str) -> str:
    if len(message) > MAX_MESSAGE_CHARS:
        return message[:MAX_MESSAGE_CHARS] + "... (shortened)"
    return message
