"""The migrator step: observe -> plan -> apply -> mark (the mark rides in the same write)."""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from typing import Any

from common import cr as crnames
from common import diff
from common.configmap import yaml11_warnings
from common.errors import ApiError, RefusedError, RetryableError
from common.kube import METADATA_ONLY, Kube, resource_path
from common.logs import fields
from common.retry import replan_on_conflict
from migrator import plan as planning

log = logging.getLogger("migrator")

STATEFULSET_PATH = resource_path("apps", "v1", "statefulsets", "kyma-system", "connectivity-proxy")
CONFIG_MAP_PATH = resource_path("", "v1", "configmaps", "kyma-system", "connectivity-proxy")
INFO_MAP_PATH = resource_path("", "v1", "configmaps", "kyma-system", "connectivity-proxy-info")
_STRICT_DECODING = "strict decoding error: "
_FIELD_PROBLEM = re.compile(r'(unknown|duplicate) field "([^"]+)"')
MAX_MESSAGE_CHARS = 500


@dataclass(frozen=True)
class Settings:
    dry_run: bool = False
    service_key_secret: str = planning.DEFAULT_SERVICE_KEY_SECRET


@dataclass(frozen=True)
class Outcome:
    summary: str
    diff: str = ""
    changed: bool = False


def migrate(kube: Kube, settings: Settings) -> Outcome:
    return replan_on_conflict(
        lambda: _attempt(kube, settings), log=log, what=f"{crnames.NAMESPACE}/{crnames.NAME}"
    )


def _attempt(kube: Kube, settings: Settings) -> Outcome:
    cr_name = f"{crnames.NAMESPACE}/{crnames.NAME}"
    cr = crnames.get_cr(kube)
    if cr is None:
        raise RetryableError(
            f"ConnectivityProxy {cr_name} does not exist yet (or its CRD is not installed); "
            "the module creates it, so a later run will find it"
        )
    if crnames.is_marked(cr, crnames.ANNOTATION_MIGRATED):
        log.info("already migrated; nothing to do", extra=fields(object=cr_name))
        return Outcome(summary=f"nothing to do: {cr_name} is already migrated")

    statefulset = kube.get(STATEFULSET_PATH, accept=METADATA_ONLY)
    if not planning.legacy_installed(statefulset):
        why = "is missing" if statefulset is None else f"lacks {planning.LEGACY_ANNOTATION}"
        log.info(
            f"no legacy installation: the StatefulSet {why}; nothing to migrate",
            extra=fields(object="kyma-system/connectivity-proxy"),
        )
        return Outcome(summary="nothing to do: no legacy Connectivity Proxy installation")

    inputs = planning.Inputs(
        cr=cr,
        config_map=kube.get(CONFIG_MAP_PATH),
        info_map=kube.get(INFO_MAP_PATH),
        service_key_secret=settings.service_key_secret,
    )
    secret = planning.secret_to_check(inputs)
    if secret is not None:
        secret_path = resource_path("", "v1", "secrets", crnames.NAMESPACE, secret)
        # Metadata only: the tool never needs, and so never holds, the secret's values.
        exists = kube.get(secret_path, accept=METADATA_ONLY) is not None
        inputs = dataclasses.replace(inputs, secret_exists=exists)
    plan = planning.plan(inputs)
    _warn_yaml11(inputs.config_map, plan.spec_after)
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
    if settings.dry_run:
        return Outcome(
            summary=f"dry run: would change {len(plan.changes)} field(s) of {cr_name} and mark it "
            "migrated",
            diff=rendered,
        )

    updated = kube.merge_patch(
        crnames.CR_PATH, plan.patch, retry_safe=True, fieldValidation="Strict"
    )
    log.info("migrated and marked", extra=fields(object=cr_name, changes=len(plan.changes)))
    crnames.record_event(
        kube,
        updated,
        "Migrated",
        f"cp-migrator moved the legacy configuration into the CR ({len(plan.changes)} field(s))",
        "cp-migrator",
    )
    return Outcome(
        summary=f"migrated {cr_name}: {len(plan.changes)} field(s) changed, marked migrated",
        diff=rendered,
        changed=True,
    )


def _warn_yaml11(config_map: dict[str, Any] | None, spec_after: dict[str, Any]) -> None:
    """A YAML 1.1 reading the text does not suggest (`1:20` = 80, `0755` = 493, `off` = false)
    is logged with the field and the value taken (common.configmap)."""
    text = ((config_map or {}).get("data") or {}).get(planning.CONFIG_KEY)
    if not isinstance(text, str):
        return
    where = f"ConfigMap {planning.CONFIG_MAP} key {planning.CONFIG_KEY}"
    for warning in yaml11_warnings(text, where, taken=spec_after.get("config")):
        log.warning(
            warning.message,
            extra=fields(object=planning.CONFIG_MAP, key=planning.CONFIG_KEY, field=warning.path),
        )


def _validate_on_server(kube: Kube, patch: dict[str, Any]) -> None:
    """Server-side dry run with strict field validation: an unknown field is an error here,
    not something the CRD schema silently prunes."""
    try:
        kube.merge_patch(
            crnames.CR_PATH, patch, retry_safe=True, dryRun="All", fieldValidation="Strict"
        )
    except ApiError as err:
        if err.status not in (400, 422):
            raise
        problems: list[str] = []
        for cause in err.causes:
            message = cause.get("message", "")
            if _STRICT_DECODING in message:
                problems += _strict_decoding_problems(message)
            else:
                problems.append(f"{cause.get('field') or '?'}: {_shortened(message)}".strip())
        problems = problems or _strict_decoding_problems(err.api_message)
        raise RefusedError(
            f"ConnectivityProxy {crnames.NAMESPACE}/{crnames.NAME}: the apiserver rejects the "
            f"migrated configuration (from ConfigMap {planning.CONFIG_MAP} key "
            f"{planning.CONFIG_KEY}); the CR is unchanged",
            details=problems,
        ) from err


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
