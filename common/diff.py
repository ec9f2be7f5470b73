"""Readable unified diffs of plain data, with credentials masked (common.redact): by key at
any depth, inside embedded YAML, and by value."""

from __future__ import annotations

import difflib
from typing import Any

import yaml

from common import redact


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (a ConfigMap's embedded YAML) as literal blocks, so that a diff
    shows the lines that changed rather than one long quoted line."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def to_yaml(value: Any) -> str:
    return redact.scrub(_dump(redact.data(value)))


def _dump(value: Any) -> str:
    return yaml.dump(
        value,
        Dumper=_BlockDumper,
        sort_keys=True,
        default_flow_style=False,
        width=1000,
        allow_unicode=False,
    )


def unified(before: Any, after: Any, before_name: str, after_name: str) -> str:
    """`diff -u` of the YAML renderings; empty when there is no difference."""
    # Both sides are redacted before either is rendered: a value remembered from one side is
    # then masked in the other too.
    before, after = redact.data(before), redact.data(after)
    lines = difflib.unified_diff(
        redact.scrub(_dump(before)).splitlines(keepends=True),
        redact.scrub(_dump(after)).splitlines(keepends=True),
        fromfile=before_name,
        tofile=after_name,
    )
    return "".join(lines)
