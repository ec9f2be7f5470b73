"""The user configuration's YAML: strict, bounded parsing, and the YAML 1.1 surprises in it.

Parsing has no side effects: what the caller makes of the result (the credentials to mask,
redact.remember_credentials; the warnings, yaml11_warnings) it does with the result.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from common import reasons
from common.errors import RefusedError

if TYPE_CHECKING:
    import yaml

# A ConfigMap holds at most 1 MiB in all, so a larger document cannot be a real one.
MAX_YAML_BYTES = 1024 * 1024
# Nodes after alias expansion: real configurations have a few hundred; a YAML bomb has billions.
MAX_EXPANDED_NODES = 100_000
MAX_DEPTH = 64


class InvalidConfiguration(RefusedError):
    """The user's configuration cannot be migrated as it is: a person fixes it."""

    reason = reasons.INVALID_CONFIGURATION


def parse_yaml_mapping(text: str, where: str) -> dict[str, Any]:
    """Parse one YAML document that must be a mapping of JSON-compatible values.

    `where` names the source (for example ``kyma-system/connectivity-proxy key
    connectivity-proxy-config.yml``); every refusal names it, and the field path or the line
    and column. No input raises anything but RefusedError
    (tests/unit/migrator/test_configmap_fuzz.py).
    """
    return parse_yaml_document(text, where).data


# A field path inside a parsed document: mapping keys, and "[]" for any list item.
FieldPath = tuple[str, ...]
# The YAML 1.1 types a plain scalar may resolve to where its text was meant.
_NOT_TEXT_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("int", "float", "bool", "timestamp")
)


@dataclass(frozen=True)
class Scalar:
    """A plain (unquoted) scalar that YAML 1.1 reads as something other than a string."""

    path: str  # ".servers.proxy.http.port", as in every refusal
    keys: tuple[str | int, ...]  # the same path as keys and list indexes
    text: str  # the source text, exactly as written
    value: Any  # what YAML 1.1 reads it as
    line: int
    column: int

    @property
    def surprise(self) -> str | None:
        """How YAML 1.1 reads it differently from what the text suggests, or None."""
        return yaml11_surprise(self.text, self.value)


@dataclass(frozen=True)
class Parsed:
    """One parse of a document: everything that is ever made of it comes from here."""

    data: dict[str, Any]
    where: str = ""  # the source, as every refusal and warning names it
    # Every plain scalar still read as a non-string, by field path, with its source text (for
    # the YAML 1.1 warnings).
    scalars: dict[str, Scalar] = field(default_factory=dict)
    # The fields `text_at` took as their source text, with that text.
    as_text: list[tuple[FieldPath, str]] = field(default_factory=list)

    @property
    def surprises(self) -> list[Scalar]:
        return [s for s in self.scalars.values() if s.surprise is not None]


_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
_OCTAL = re.compile(r"[-+]?0[0-7_]+")
_BINARY = re.compile(r"[-+]?0b[01_]+")
_BOOLEAN_WORDS = ("yes", "no", "on", "off")


def yaml11_surprise(text: str, value: Any) -> str | None:
    """Why YAML 1.1's reading of a plain scalar differs from what its text suggests."""
    if isinstance(value, bool):
        if text.lower() in _BOOLEAN_WORDS:
            return f"YAML 1.1 reads the word {text!r} as the boolean {str(value).lower()}"
        return None
    if isinstance(value, int | float):
        if _SEXAGESIMAL.fullmatch(text):
            return f"YAML 1.1 reads {text!r} as a base-60 (sexagesimal) number, {value}"
        if _OCTAL.fullmatch(text) and text.lstrip("+-").rstrip("_") not in ("0", ""):
            return f"YAML 1.1 reads {text!r} as an octal number (leading zero), {value}"
        if _BINARY.fullmatch(text):
            return f"YAML 1.1 reads {text!r} as a binary number, {value}"
    return None


def parse_yaml_document(
    text: str, where: str, text_at: Callable[[FieldPath], bool] | None = None
) -> Parsed:
    """`parse_yaml_mapping`, with the source text of every non-string plain scalar; and where
    `text_at(path)` says a field holds text, a plain scalar that YAML would read as a number,
    boolean or date is taken as its exact source text instead (`0443` stays "0443", never
    291), listed in `as_text`. The one parse function: everything else reads its result."""
    try:
        return _parse(text, where, text_at)
    except RefusedError:
        raise
    except Exception as err:  # never a traceback: whatever the input, a refusal naming it
        raise InvalidConfiguration(
            f"{where}: the YAML cannot be read ({type(err).__name__}: {_clip(str(err))}); "
            "nothing was changed"
        ) from err


def _parse(text: str, where: str, text_at: Callable[[FieldPath], bool] | None) -> Parsed:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_YAML_BYTES:
        raise InvalidConfiguration(
            f"{where}: {size} bytes of YAML, more than the {MAX_YAML_BYTES} allowed"
        )
    if not text.strip():
        raise InvalidConfiguration(f"{where}: the YAML document is empty")
    # Imported here: the cleaner and cp-status need only content_digest, and yaml costs
    # ~20 ms of their cold start.
    import yaml

    loader: Any = None
    as_text: list[tuple[FieldPath, str]] = []
    try:
        # The reader checks every character when it is created: inside the try, so that a
        # control character is a refusal naming its position, not a traceback.
        loader = _loader_class()(text)
        node = loader.get_single_node()
        if node is None:
            raise InvalidConfiguration(f"{where}: the YAML document is empty")
        _check_nodes(node, where)
        if text_at is not None:
            _retag_as_text(node, (), text_at, as_text)
        data = loader.construct_document(node)
    except yaml.reader.ReaderError as err:
        raise InvalidConfiguration(f"{where}: invalid YAML: {_describe_reader(err, text)}") from err
    except yaml.MarkedYAMLError as err:
        raise InvalidConfiguration(f"{where}: invalid YAML: {_describe(err, text)}") from err
    except yaml.YAMLError as err:
        raise InvalidConfiguration(f"{where}: invalid YAML: {_clip(str(err))}") from err
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        raise InvalidConfiguration(f"{where}: the YAML document is empty")
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__} scalar"
        raise InvalidConfiguration(f"{where}: the YAML document is {kind}, not a mapping")
    _check_values(data, where, "")
    scalars: dict[str, Scalar] = {}
    _collect_scalars(node, data, (), scalars)
    return Parsed(data=data, where=where, scalars=scalars, as_text=as_text)


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


_LOADER: Any = None


def _loader_class() -> Any:
    """SafeLoader that bounds the nesting while composing (the composer recurses: 5,000
    nested `[` would otherwise be a RecursionError) and names the position of any value it
    cannot construct (an integer of more than 4,300 digits, a date that does not exist)."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class Loader(yaml.SafeLoader):
        _depth = 0

        # Tabs: YAML allows them as separation inside a line (after `key:`, between the
        # words of a plain value, before a comment); PyYAML refuses every tab outside quotes.
        # Here a tab past a line's indentation is white space as in YAML; in the indentation
        # it stays an error.
        def _past_indentation(self) -> bool:
            buffer: str = self.buffer
            pointer: int = self.pointer
            start = max(buffer.rfind("\n", 0, pointer), buffer.rfind("\r", 0, pointer)) + 1
            return buffer[start:pointer].strip(" \t") != ""

        def scan_to_next_token(self) -> None:
            if self.index == 0 and self.peek() == "\ufeff":
                self.forward()
            found = False
            while not found:
                while self.peek() == " " or (self.peek() == "\t" and self._past_indentation()):
                    self.forward()
                if self.peek() == "#":
                    while self.peek() not in "\0\r\n\x85\u2028\u2029":
                        self.forward()
                if self.scan_line_break():  # type: ignore[no-untyped-call]
                    if not self.flow_level:
                        self.allow_simple_key = True
                else:
                    found = True

        def scan_plain_spaces(self, indent: Any, start_mark: Any) -> Any:
            # PyYAML's own, with tabs inside a line taken as the white space they are.
            length = 0
            while self.peek(length) in " \t":
                length += 1
            if self.peek(length) in "\r\n\x85\u2028\u2029":
                # Trailing white space before a line break is not part of the value; the
                # folding of line breaks is PyYAML's (spaces only, as before).
                self.forward(length)
                return super().scan_plain_spaces(indent, start_mark)
            whitespaces = self.prefix(length)
            self.forward(length)
            return [whitespaces] if whitespaces else []

        def compose_node(self, parent: Any, index: Any) -> Any:
            self._depth += 1
            try:
                if self._depth > MAX_DEPTH + 1:
                    raise yaml.composer.ComposerError(
                        None,
                        None,
                        f"nested deeper than {MAX_DEPTH} levels",
                        self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                    )
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def construct_object(self, node: Any, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep)
            except yaml.YAMLError:
                raise
            except Exception as err:
                problem = f"this value cannot be read ({type(err).__name__}: {_clip(str(err))})"
                if "integer string conversion" in str(err):
                    problem = (
                        f"an integer of {len(str(node.value))} digits, more than the "
                        f"{sys.get_int_max_str_digits()} Python reads and the CR can hold "
                        "(quote it to make it a string)"
                    )
                raise yaml.constructor.ConstructorError(
                    None, None, problem, node.start_mark
                ) from err

    _LOADER = Loader
    return Loader


def _clip(message: str, limit: int = 300) -> str:
    message = message.replace("\n", " ")
    return message if len(message) <= limit else message[:limit] + "..."


def _position(text: str, index: int) -> str:
    index = max(0, min(index, len(text)))
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {column}"


def _describe_reader(err: Any, text: str) -> str:
    character = err.character
    code = ord(character) if isinstance(character, str) else int(character)
    escape = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return (
        f"the control character U+{code:04X} is not allowed in YAML, at "
        f"{_position(text, int(err.position))} (remove it, or write it as the escape "
        f'"{escape}" inside a double-quoted string)'
    )


def _describe(err: yaml.MarkedYAMLError, text: str) -> str:
    mark = err.problem_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
    problem = err.problem or str(err)
    if err.context:
        started = err.context_mark
        at = f" (from line {started.line + 1}, column {started.column + 1})" if started else ""
        problem = f"{err.context}{at}: {problem}"
    if "\t" in text and ("\\t" in problem or "tab" in problem.lower()):
        lines = [
            str(number)
            for number, line in enumerate(text.splitlines(), start=1)
            if "\t" in line[: len(line) - len(line.lstrip(" \t"))]
        ]
        where_tabs = f": line(s) {', '.join(lines)}" if lines else ""
        problem += f" (YAML forbids tabs for indentation; use spaces{where_tabs})"
    return f"{problem} at {where}"


def _collect_scalars(
    node: Any, value: Any, keys: tuple[str | int, ...], found: dict[str, Scalar]
) -> None:
    """Walk the composed nodes and the constructed data together. The constructor flattened
    merge keys into each mapping node, in order, so the last pair for a key is the one the
    dict holds."""
    import yaml

    if isinstance(node, yaml.MappingNode) and isinstance(value, dict):
        last: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                last[key_node.value] = value_node
        for key, value_node in last.items():
            if key in value:
                _collect_scalars(value_node, value[key], (*keys, key), found)
    elif isinstance(node, yaml.SequenceNode) and isinstance(value, list):
        for index, (item_node, item) in enumerate(zip(node.value, value, strict=False)):
            _collect_scalars(item_node, item, (*keys, index), found)
    elif (
        isinstance(node, yaml.ScalarNode)
        and node.style is None
        and not isinstance(value, str)
        and isinstance(value, bool | int | float)
    ):
        path = _path(keys)
        found[path] = Scalar(
            path=path,
            keys=keys,
            text=node.value,
            value=value,
            line=int(node.start_mark.line) + 1,
            column=int(node.start_mark.column) + 1,
        )


def _path(keys: tuple[str | int, ...]) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys)


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
            raise InvalidConfiguration(
                f"{where}: a YAML alias refers to itself (line {_line(node)})"
            )
        if depth > MAX_DEPTH:
            raise InvalidConfiguration(f"{where}: YAML nested deeper than {MAX_DEPTH} levels")
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
            raise InvalidConfiguration(
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
            raise InvalidConfiguration(
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
                raise InvalidConfiguration(
                    f"{where}: key {key!r} at {path or '.'} is a {type(key).__name__}, not a "
                    "string (quote it)"
                )
            _check_values(item, where, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_values(item, where, f"{path}[{index}]")
    elif value is None:
        raise InvalidConfiguration(
            f"{where}: {path} has no value (null); set a value or remove the key"
        )
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidConfiguration(f"{where}: {path} is {value}, which JSON cannot hold")
    elif not isinstance(value, str | int | float | bool):
        raise InvalidConfiguration(
            f"{where}: {path} is a {type(value).__name__} ({value!r}); quote it to make it a string"
        )


@dataclass(frozen=True)
class Yaml11Warning:
    path: str  # the field path in the configuration (".servers.proxy.http.port")
    message: str


_UNSET: Any = object()


def yaml11_warnings(parsed: Parsed, taken: Any = _UNSET) -> list[Yaml11Warning]:
    """One warning per plain scalar of the parsed document that YAML 1.1 reads differently
    from what its text suggests (sexagesimal `1:20` = 80, octal `0755` = 493,
    `on`/`off`/`yes`/`no` = booleans), naming the field and the value taken. `taken` is what
    the step made of the document (the same keys; for the migrator, spec.config after
    merging): a field it took as its source text is no surprise."""
    where = parsed.where
    found: list[Yaml11Warning] = []
    for scalar in parsed.surprises:
        value = scalar.value if taken is _UNSET else _lookup(taken, scalar.keys, scalar.value)
        if value == scalar.text and isinstance(value, str):
            continue  # taken as its text (a field the CRD types as string): no surprise
        outcome = (
            f"the value taken is {json.dumps(value)}; write {json.dumps(scalar.text)} "
            "(quoted) if you meant the text"
        )
        found.append(
            Yaml11Warning(
                path=scalar.path,
                message=f"{where}: {scalar.path} (line {scalar.line}): {scalar.surprise}; "
                + outcome,
            )
        )
    return found


def _lookup(root: Any, keys: tuple[str | int, ...], default: Any) -> Any:
    node = root
    for key in keys:
        in_list = isinstance(key, int) and isinstance(node, list) and key < len(node)
        if not in_list and not (isinstance(node, dict) and key in node):
            return default
        node = node[key]
    return node
