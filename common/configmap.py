"""ConfigMap content: strict, bounded YAML parsing and the canonical digest of a ConfigMap."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from common.errors import RefusedError

if TYPE_CHECKING:
    import yaml

# A ConfigMap holds at most 1 MiB in all, so a larger document cannot be a real one.
MAX_YAML_BYTES = 1024 * 1024
# Nodes after alias expansion: real configurations have a few hundred; a YAML bomb has billions.
MAX_EXPANDED_NODES = 100_000
MAX_DEPTH = 64


def parse_yaml_mapping(text: str, where: str) -> dict[str, Any]:
    """Parse one YAML document that must be a mapping of JSON-compatible values.

    `where` names the source (for example ``kyma-system/connectivity-proxy key
    connectivity-proxy-config.yml``); every refusal names it, and the field path or line.
    """
    return parse_yaml_config(text, where)[0]


# A field path inside a parsed document: mapping keys, and "[]" for any list item.
FieldPath = tuple[str, ...]
# The YAML 1.1 types a plain scalar may resolve to where its text was meant.
_NOT_TEXT_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("int", "float", "bool", "timestamp")
)


def parse_yaml_config(
    text: str, where: str, text_at: Callable[[FieldPath], bool] | None = None
) -> tuple[dict[str, Any], list[tuple[FieldPath, str]]]:
    """`parse_yaml_mapping`, and where `text_at(path)` says a field holds text, a plain
    scalar that YAML would read as a number, boolean or date is taken as its exact source
    text instead (`0443` stays "0443", never 291). Returns the data and those fields with
    their text."""
    size = len(text.encode("utf-8"))
    if size > MAX_YAML_BYTES:
        raise RefusedError(f"{where}: {size} bytes of YAML, more than the {MAX_YAML_BYTES} allowed")
    if not text.strip():
        raise RefusedError(f"{where}: the YAML document is empty")
    # Imported here: the cleaner and cp-status need only content_digest, and yaml costs
    # ~20 ms of their cold start.
    import yaml

    loader = yaml.SafeLoader(text)
    as_text: list[tuple[FieldPath, str]] = []
    try:
        node = loader.get_single_node()
        if node is None:
            raise RefusedError(f"{where}: the YAML document is empty")
        _check_nodes(node, where)
        if text_at is not None:
            _retag_as_text(node, (), text_at, as_text)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        raise RefusedError(f"{where}: invalid YAML: {_describe(err, text)}") from err
    except yaml.YAMLError as err:
        raise RefusedError(f"{where}: invalid YAML: {err}") from err
    finally:
        loader.dispose()
    if data is None:
        raise RefusedError(f"{where}: the YAML document is empty")
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__} scalar"
        raise RefusedError(f"{where}: the YAML document is {kind}, not a mapping")
    _check_values(data, where, "")
    return data, as_text


def _retag_as_text(
    node: yaml.Node,
    path: FieldPath,
    text_at: Callable[[FieldPath], bool],
    found: list[tuple[FieldPath, str]],
) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                _retag_as_text(value_node, (*path, str(key_node.value)), text_at, found)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _retag_as_text(item, (*path, "[]"), text_at, found)
    elif (
        isinstance(node, yaml.ScalarNode)
        and node.tag in _NOT_TEXT_TAGS
        and node.style is None  # plain: a quoted scalar is already text
        and text_at(path)
    ):
        node.tag = "tag:yaml.org,2002:str"
        found.append((path, str(node.value)))


def _describe(err: yaml.MarkedYAMLError, text: str) -> str:
    mark = err.problem_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
    problem = err.problem or str(err)
    if err.context:
        started = err.context_mark
        at = f" (from line {started.line + 1}, column {started.column + 1})" if started else ""
        problem = f"{err.context}{at}: {problem}"
    if "\t" in text and ("\\t" in problem or "tab" in problem.lower()):
        problem += " (YAML forbids tabs for indentation; use spaces)"
    return f"{problem} at {where}"


def _check_nodes(root: yaml.Node, where: str) -> None:
    """Refuse alias bombs, recursive aliases, excessive depth and duplicate keys, before
    anything is constructed: counting expanded nodes on the composed graph is linear in
    its size, however large the expansion would be."""
    import yaml

    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def expanded(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            raise RefusedError(f"{where}: a YAML alias refers to itself (line {_line(node)})")
        if depth > MAX_DEPTH:
            raise RefusedError(f"{where}: YAML nested deeper than {MAX_DEPTH} levels")
        in_progress.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            _check_duplicate_keys(node, where)
            for key_node, value_node in node.value:
                total += expanded(key_node, depth + 1) + expanded(value_node, depth + 1)
                if total > MAX_EXPANDED_NODES:
                    break
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += expanded(item, depth + 1)
                if total > MAX_EXPANDED_NODES:
                    break
        in_progress.discard(key)
        if total > MAX_EXPANDED_NODES:
            raise RefusedError(
                f"{where}: YAML aliases expand to more than {MAX_EXPANDED_NODES} nodes "
                "(an alias bomb?); refusing to expand it"
            )
        sizes[key] = total
        return total

    expanded(root, 0)


def _check_duplicate_keys(node: yaml.MappingNode, where: str) -> None:
    import yaml

    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        if key_node.value in seen:
            raise RefusedError(
                f"{where}: duplicate key {key_node.value!r} at line {_line(key_node)} "
                f"(first at line {seen[key_node.value]})"
            )
        seen[key_node.value] = _line(key_node)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _check_values(value: Any, where: str, path: str) -> None:
    """Only what JSON (and so the CR) can hold; never let YAML 1.1 surprises through."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise RefusedError(
                    f"{where}: key {key!r} at {path or '.'} is a {type(key).__name__}, not a "
                    "string (quote it)"
                )
            _check_values(item, where, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_values(item, where, f"{path}[{index}]")
    elif value is None:
        raise RefusedError(f"{where}: {path} has no value (null); set a value or remove the key")
    elif isinstance(value, float) and not math.isfinite(value):
        raise RefusedError(f"{where}: {path} is {value}, which JSON cannot hold")
    elif not isinstance(value, str | int | float | bool):
        raise RefusedError(
            f"{where}: {path} is a {type(value).__name__} ({value!r}); quote it to make it a string"
        )


def content_digest(configmap: dict[str, Any]) -> str:
    """sha256 of a ConfigMap's canonical content: its data and binaryData, keys sorted."""
    canonical = json.dumps(
        {"data": configmap.get("data") or {}, "binaryData": configmap.get("binaryData") or {}},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
