"""What changed in a legacy ConfigMap after it was migrated into the CR: which keys, and which
fields of the user configuration, old -> new, redacted.

The old values are taken from the CR. Its spec.config holds what the migration wrote: every
field of the user configuration at the same path, the ports of connectivity-proxy-info at
servers.proxy.*.port. The CR is there in every state where drift is seen (a backup is not: the
refusal comes before cp-backup's first copy), and it is exactly what migrating again would
change. What it cannot show: a key or field the CR does not take, or one removed from the
ConfigMap (the CR keeps it); the change is then named as such.

Values are compared as text (YAML read with the base loader, every scalar a string), so the
exact text a migration kept (`"0443"`) is not mistaken for a change.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from common import redact
from common.kyma import CONFIG_KEY, CONFIGMAP, INFO_CONFIGMAP, PORTS

MAX_LINES = 40  # a refusal names the first changes; the rest are counted
_MAX_DEPTH = 64
_MAX_NODES = 20_000  # an alias bomb is walked no further than this


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _shown(key: str, value: Any) -> str:
    if value is _ABSENT:
        return "(not set)"
    if redact.is_secret_key(key):
        if not isinstance(value, dict | list):  # a structure is never shown, nor walked
            redact.remember(value)
        return redact.MASK
    structured = isinstance(value, dict | list)
    shown = _bounded(value, [200]) if structured else json.dumps(_text(value))
    return redact.scrub(shown if len(shown) <= 200 else shown[:200] + "...")


def _bounded(value: Any, budget: list[int]) -> str:
    """JSON-like text of `value`, cut once about `budget` characters are written: an alias
    bomb's expansion is never built."""
    if budget[0] <= 0:
        return "..."
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            if budget[0] <= 0:
                parts.append("...")
                break
            shown = json.dumps(redact.MASK) if redact.is_secret_key(key) else _bounded(item, budget)
            parts.append(f"{json.dumps(str(key))}: {shown}")
        return "{" + ", ".join(parts) + "}"
    if isinstance(value, list):
        parts = []
        for item in value:
            if budget[0] <= 0:
                parts.append("...")
                break
            parts.append(_bounded(item, budget))
        return "[" + ", ".join(parts) + "]"
    text = json.dumps(_text(value))
    budget[0] -= len(text) + 2
    return text


class _Absent:
    pass


_ABSENT = _Absent()


def _at(tree: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(tree, dict) or part not in tree:
            return _ABSENT
        tree = tree[part]
    return tree


def _same(old: Any, new: Any) -> bool:
    if isinstance(new, dict):
        return False  # a mapping is compared field by field, never whole
    if isinstance(new, list) or isinstance(old, list):
        if not (isinstance(new, list) and isinstance(old, list)) or len(new) != len(old):
            return False
        return all(_same(a, b) for a, b in zip(old, new, strict=True))
    return old is not _ABSENT and _text(old) == _text(new)


def _leaves(
    tree: Any, path: tuple[str, ...], found: list[tuple[tuple[str, ...], Any]], budget: list[int]
) -> None:
    budget[0] -= 1
    if budget[0] < 0 or len(path) > _MAX_DEPTH:
        return
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            _leaves(value, (*path, str(key)), found, budget)
    else:
        found.append((path, tree))


def changes(cr: dict[str, Any], configmap: dict[str, Any] | None) -> list[str]:
    """The changes of the live `configmap` against what the CR holds, one line each:
    `key K: field F: old -> new`. Empty when the ConfigMap is not one of the two."""
    if configmap is None:
        return []
    name = (configmap.get("metadata") or {}).get("name")
    data = configmap.get("data") or {}
    config = ((cr.get("spec") or {}).get("config")) or {}
    lines: list[str] = []
    if name == CONFIGMAP:
        text = data.get(CONFIG_KEY)
        if not isinstance(text, str):
            return [f"key {CONFIG_KEY}: not set any more"]
        # The base loader: no tags constructed, every scalar a string.
        loader = yaml.BaseLoader(text)
        try:
            live = loader.get_single_data()
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            return [f"key {CONFIG_KEY}: no longer valid YAML{where}"]
        finally:
            loader.dispose()
        found: list[tuple[tuple[str, ...], Any]] = []
        _leaves(live, (), found, [_MAX_NODES])
        for path, new in found:
            old = _at(config, path)
            if not _same(old, new):
                field = ".".join(path) or "(the whole document)"
                key = path[-1] if path else ""
                lines.append(
                    f"key {CONFIG_KEY}: field {field}: {_shown(key, old)} → {_shown(key, new)}"
                )
    elif name == INFO_CONFIGMAP:
        for key, path in PORTS.items():
            if key not in data:
                continue
            old = _at(config, path)
            if not _same(old, data[key]):
                where = "spec.config." + ".".join(path)
                lines.append(f"key {key} ({where}): {_shown(key, old)} → {_shown(key, data[key])}")
    else:
        return []
    if not lines:
        return [
            "no value the CR holds differs: the change is in formatting, comments, a removed "
            "field, or keys the CR does not take"
        ]
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES], f"... and {len(lines) - MAX_LINES} more"]
    return lines
