"""Readable unified diffs of plain data, with secret-looking values masked."""

from __future__ import annotations

import difflib
import re
from typing import Any

import yaml

MASK = "<redacted>"
# Key names whose values are credentials; names of secrets and keys are not.
_SECRET_KEY = re.compile(r"(secretData|password|passwd|token|clientSecret|privateKey)$", re.I)


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: (MASK if isinstance(key, str) and _SECRET_KEY.search(key) else redact(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (a ConfigMap's embedded YAML) as literal blocks, so that a diff
    shows the lines that changed rather than one long quoted line."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def to_yaml(value: Any) -> str:
    return yaml.dump(
        redact(value),
        Dumper=_BlockDumper,
        sort_keys=True,
        default_flow_style=False,
        width=1000,
        allow_unicode=False,
    )


def unified(before: Any, after: Any, before_name: str, after_name: str) -> str:
    """`diff -u` of the YAML renderings; empty when there is no difference."""
    lines = difflib.unified_diff(
        to_yaml(before).splitlines(keepends=True),
        to_yaml(after).splitlines(keepends=True),
        fromfile=before_name,
        tofile=after_name,
    )
    return "".join(lines)
