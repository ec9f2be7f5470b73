"""Redaction: credential values never reach an output (diffs, dry runs, errors, debug logs).

Two ways, both needed:

- by key: a value under a credential-looking key (`password`, `clientSecret`, `secretData`,
  `proxy-credentials`, `tls.key`, ...) is masked at any depth: in plain data, in the YAML or
  JSON text embedded in a ConfigMap value, and all of a Secret's `data` / `stringData`;
- by value: every value masked that way is remembered for the run (a Registry), and every
  log line and rendered diff is scrubbed of it (and of its base64 form), wherever it turns up
  (an apiserver error quoting the object, kubectl's last-applied annotation, ...).

Names of secrets and of their keys (`secretName`, `serviceCredentialsKey`) are not values and
stay readable.
"""

from __future__ import annotations

import base64
import re
import threading
from typing import Any

MASK = "<redacted>"
# Words that make a key a credential's, after lower-casing and dropping separators ...
_SECRET_WORD = re.compile(
    "password|passwd|passphrase|secret|token|credential|privatekey|apikey|accesskey|servicekey"
)
# ... unless the key names or configures one rather than holding it.
_NAMES_ONE = re.compile("(name|names|ref|config|mode|path|file|url|uri|enabled|type|id|keys?)$")
_KEY_HOLDER = re.compile("(privatekey|apikey|accesskey|secretkey|servicekey)$")
_SEPARATORS = re.compile(r"[^a-z0-9]")
# Values shorter than this are not remembered: masking every "true" or "1" would hide more
# than it protects (they are still masked by key).
MIN_REMEMBERED = 8
# Embedded YAML is redacted through its syntax tree only up to this size.
_MAX_EMBEDDED = 1024 * 1024


def is_secret_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    lowered = key.lower()
    if lowered.endswith(".key") or lowered == "ssh-privatekey":
        return True
    normal = _SEPARATORS.sub("", lowered)
    if not _SECRET_WORD.search(normal):
        return False
    return bool(_KEY_HOLDER.search(normal)) or not _NAMES_ONE.search(normal)


class Registry:
    """The values a run has masked by key (and their base64 forms): every later log line and
    diff of that run is scrubbed of them. One per run (common.runner.Run.secrets)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._remembered: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def remember(self, value: object) -> None:
        """Mask this value (and its base64 form) in every later log line and diff."""
        text = str(value) if isinstance(value, bool | int | float) else value
        if not isinstance(text, str):
            return
        forms = {text, text.strip(), *(line.strip() for line in text.splitlines())}
        with self._lock:
            new = {form for form in forms if len(form) >= MIN_REMEMBERED} - self._remembered
            for form in new:
                self._remembered.add(form)
                encoded = base64.b64encode(form.encode("utf-8", "surrogatepass")).decode()
                self._remembered.add(encoded)
            if new:  # longest first, so that a value containing another is masked whole
                ordered = sorted(self._remembered, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(form) for form in ordered))

    def forget_all(self) -> None:
        with self._lock:
            self._remembered.clear()
            self._pattern = None

    def scrub(self, text: str) -> str:
        """Mask every remembered value in text."""
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern is not None and text else text


# The registry of the run in progress (common.runner.execute activates the run's own).
_active = Registry()


def activate(registry: Registry) -> None:
    """Make `registry` the one remember() and scrub() use: the run's own."""
    global _active
    _active = registry


def remember(value: object) -> None:
    """Mask this value (and its base64 form) in every later log line and diff of this run."""
    _active.remember(value)


def remember_all(value: Any) -> None:
    """Every scalar inside value (a mapping under a credential key holds only secrets)."""
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for item in items:
        remember_all(item)
    if not isinstance(value, dict | list):
        remember(value)


def remember_credentials(value: Any) -> None:
    """Every value under a credential-looking key in plain data (a parsed configuration), at
    any depth: masked in every later output."""
    if isinstance(value, dict):
        for key, item in value.items():
            if is_secret_key(key):
                remember_all(item)
            else:
                remember_credentials(item)
    elif isinstance(value, list):
        for item in value:
            remember_credentials(item)


def forget_all() -> None:
    """For tests: start from nothing remembered."""
    _active.forget_all()


def scrub(text: str) -> str:
    """Mask every value this run remembered in text."""
    return _active.scrub(text)


def data(value: Any, *, secret: bool = False) -> Any:
    """A copy of plain data with credentials masked at any depth (remembered on the way).

    A mapping of kind Secret has every `data` / `stringData` value masked; a string holding
    YAML or JSON (a ConfigMap's embedded configuration) is redacted inside."""
    if secret:
        remember_all(value)
        return MASK
    if isinstance(value, dict):
        is_secret_object = value.get("kind") == "Secret"
        result: dict[Any, Any] = {}
        for key, item in value.items():
            hidden = is_secret_key(key) or (is_secret_object and key in ("data", "stringData"))
            if hidden and isinstance(item, dict) and is_secret_object:
                result[key] = {name: data(inner, secret=True) for name, inner in item.items()}
            else:
                result[key] = data(item, secret=hidden)
        return result
    if isinstance(value, list):
        return [data(item) for item in value]
    if isinstance(value, str) and _may_hold_structure(value):
        return embedded(value)
    return value


def _may_hold_structure(text: str) -> bool:
    return ":" in text and ("\n" in text or text.lstrip().startswith("{"))


def embedded(text: str) -> str:
    """YAML or JSON text with the values under credential keys masked, at any depth, the
    rest left exactly as written (so that a diff still shows what changed)."""
    spans = _secret_spans(text)
    if spans is None:
        return _by_lines(text)
    for start, end in sorted(spans, reverse=True):
        text = text[:start] + MASK + text[end:]
    return text


def _secret_spans(text: str) -> list[tuple[int, int]] | None:
    """Character spans of the values under credential keys; None when the text is no YAML."""
    if len(text) > _MAX_EMBEDDED:
        return None
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except Exception:  # not YAML (or not one document): redact line by line
        return None
    spans: list[tuple[int, int]] = []
    seen: set[int] = set()

    def walk(node: Any, depth: int) -> None:
        if node is None or id(node) in seen or depth > 100:
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and is_secret_key(key_node.value):
                    _remember_node(value_node, 0)
                    spans.append((value_node.start_mark.index, value_node.end_mark.index))
                else:
                    walk(value_node, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item, depth + 1)
        elif isinstance(node, yaml.ScalarNode) and _may_hold_structure(node.value):
            # YAML inside a string inside YAML (kubectl's last-applied annotation): remember
            # what it holds, so that scrubbing masks it where it appears escaped.
            embedded(node.value)

    walk(root, 0)
    # Keep the outermost spans only.
    result: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if result and start < result[-1][1]:
            continue
        if end > start:
            result.append((start, end))
    return result


def _remember_node(node: Any, depth: int) -> None:
    import yaml

    if isinstance(node, yaml.ScalarNode):
        remember(node.value)
    elif depth < 100 and isinstance(node, yaml.CollectionNode):
        for item in node.value:  # a mapping's items are (key, value) pairs: values only
            _remember_node(item[1] if isinstance(item, tuple) else item, depth + 1)


_LINE = re.compile(r"""^(\s*(?:-\s+)?["']?([^\s"':#][^"':]*?)["']?\s*[:=]\s*)(\S.*?)\s*$""")


def _by_lines(text: str) -> str:
    """Text that is no valid YAML: mask what follows `key:` or `key=` on lines whose key is a
    credential's."""
    lines = []
    for line in text.split("\n"):
        match = _LINE.match(line)
        if match and is_secret_key(match.group(2)):
            remember(match.group(3).strip("\"'"))
            line = match.group(1) + MASK
        lines.append(line)
    return "\n".join(lines)
