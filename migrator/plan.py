"""Pure planning of the migration: cluster data in, intended change out. No I/O here."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from common import cr as crnames
from common.configmap import parse_yaml_mapping
from common.errors import RefusedError

CONFIG_KEY = "connectivity-proxy-config.yml"
CONFIG_MAP = "kyma-system/connectivity-proxy"
INFO_MAP = "kyma-system/connectivity-proxy-info"
LEGACY_ANNOTATION = "reconciler.kyma-project.io/managed-by-reconciler-disclaimer"
DEFAULT_SERVICE_KEY_SECRET = "connectivity-service-service-key"
TENANT_MODES = ("dedicated", "shared")

# connectivity-proxy-info key -> path under spec.config
PORTS: dict[str, tuple[str, ...]] = {
    "onpremise_proxy_http_port": ("servers", "proxy", "http", "port"),
    "onpremise_proxy_ldap_port": ("servers", "proxy", "rfcAndLdap", "port"),
    "onpremise_socks5_proxy_port": ("servers", "proxy", "socks5", "port"),
}
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
    service_key_secret: str = DEFAULT_SERVICE_KEY_SECRET
    # None: not looked up yet (only shared mode needs it).
    secret_exists: bool | None = None


@dataclass(frozen=True)
class Change:
    path: str
    old: Any
    new: Any
    reason: str


@dataclass(frozen=True)
class Plan:
    spec_before: dict[str, Any]
    spec_after: dict[str, Any]
    changes: list[Change] = field(default_factory=list)
    patch: dict[str, Any] = field(default_factory=dict)


def legacy_installed(statefulset: dict[str, Any] | None) -> bool:
    return statefulset is not None and LEGACY_ANNOTATION in crnames.annotations_of(statefulset)


def user_config(config_map: dict[str, Any] | None) -> dict[str, Any]:
    """The user's configuration from the legacy ConfigMap, or a refusal naming what is wrong."""
    if config_map is None:
        raise RefusedError(
            f"ConfigMap {CONFIG_MAP} is missing: there is no configuration to migrate"
        )
    data = config_map.get("data") or {}
    if CONFIG_KEY not in data:
        if CONFIG_KEY in (config_map.get("binaryData") or {}):
            raise RefusedError(
                f"ConfigMap {CONFIG_MAP}: key {CONFIG_KEY} is under binaryData; "
                "the legacy component reads it from data"
            )
        keys = ", ".join(sorted(data)) or "none"
        raise RefusedError(f"ConfigMap {CONFIG_MAP} has no key {CONFIG_KEY} (keys: {keys})")
    return parse_yaml_mapping(data[CONFIG_KEY], f"ConfigMap {CONFIG_MAP} key {CONFIG_KEY}")


def ports(info_map: dict[str, Any] | None) -> dict[str, int]:
    """The three on-premise proxy ports, each a decimal integer from 1 to 65535."""
    if info_map is None:
        raise RefusedError(f"ConfigMap {INFO_MAP} is missing: the proxy ports cannot be migrated")
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
        raise RefusedError(f"ConfigMap {INFO_MAP}: invalid ports", details=problems)
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


def tenant_mode(cr: dict[str, Any], config: dict[str, Any]) -> str:
    spec_config = ((cr.get("spec") or {}).get("config")) or {}
    mode = config.get("tenantMode", spec_config.get("tenantMode", "dedicated"))
    if mode not in TENANT_MODES:
        raise RefusedError(
            f"ConfigMap {CONFIG_MAP} key {CONFIG_KEY}: tenantMode {mode!r} is unknown "
            f"(expected one of {', '.join(TENANT_MODES)})"
        )
    return str(mode)


def secret_to_check(inputs: Inputs) -> str | None:
    """The Secret whose existence must be confirmed before planning (shared mode only)."""
    config = user_config(inputs.config_map)
    return inputs.service_key_secret if tenant_mode(inputs.cr, config) == "shared" else None


def plan(inputs: Inputs) -> Plan:
    config = user_config(inputs.config_map)
    found_ports = ports(inputs.info_map)
    mode = tenant_mode(inputs.cr, config)
    spec_before = copy.deepcopy(inputs.cr.get("spec") or {})
    current_config = spec_before.get("config") or {}

    new_config = deep_merge(current_config, config)
    reasons: dict[str, str] = {}
    for path in _leaf_paths(config):
        reasons[_dotted(("config", *path))] = f"set in {CONFIG_MAP}"
    for key, path in PORTS.items():
        _set(new_config, path, found_ports[key])
        reasons[_dotted(("config", *path))] = f"{INFO_MAP} key {key}"

    spec_after = copy.deepcopy(spec_before)
    spec_after["config"] = new_config
    spec_patch: dict[str, Any] = {"config": new_config}
    if mode == "shared":
        if inputs.secret_exists is None:
            raise AssertionError("shared mode is planned only after the secret was looked up")
        if not inputs.secret_exists:
            raise RefusedError(
                f"tenantMode is shared, but Secret {crnames.NAMESPACE}/{inputs.service_key_secret} "
                "does not exist; create it, or name the right one with --service-key-secret "
                "(CP_SERVICE_KEY_SECRET)"
            )
        _set(spec_after, SECRET_NAME_PATH, inputs.service_key_secret)
        _set(spec_patch, SECRET_NAME_PATH, inputs.service_key_secret)
        reasons[_dotted(SECRET_NAME_PATH)] = "tenantMode shared uses the service-key Secret"

    changes = [
        Change(path=f"spec.{path}", old=old, new=new, reason=reasons.get(path, "merged"))
        for path, old, new in _differences(spec_before, spec_after, ())
    ]
    patch = {
        "metadata": {
            "resourceVersion": inputs.cr["metadata"]["resourceVersion"],
            "annotations": {crnames.ANNOTATION_MIGRATED: "true"},
        },
        "spec": spec_patch,
    }
    return Plan(spec_before=spec_before, spec_after=spec_after, changes=changes, patch=patch)


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
