"""Fuzzing the parser of the user's input (seeded, so a failure reproduces): random bytes, and
mutations of real configurations (the project's own fixtures, and the fleet's ConfigMaps from
../shared/fixtures/ when present). Whatever the input, parsing either succeeds or is a
RefusedError (exit 3) naming the ConfigMap and key: never another exception (a traceback and
exit 1, which the kubelet would retry forever)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from common import kyma
from common.errors import RefusedError
from hack.devenv import legacy
from hack.devenv.cluster import FIXTURES, SHARED_FIXTURES
from migrator import plan as planning
from migrator.config_yaml import parse_yaml_document

SEED = 20261129
WHERE = f"ConfigMap {planning.CONFIG_MAP} key {planning.CONFIG_KEY}"
FLEET = SHARED_FIXTURES / "fleet-configmaps.yaml"

# What breaks parsers: YAML syntax, control and C1 characters, surrogates' neighbours, BOMs,
# line separators, tabs, and numbers YAML 1.1 reads in surprising ways.
SPECIAL = [
    *":-?[]{},&*!|>'\"%@`#\t\r\n ",
    "\x00",
    "\x07",
    "\x1b",
    "\x7f",
    "\x85",
    "\x9b",
    "\ufeff",
    "\u2028",
    "\ufffe",
    "\U0001f600",
    "<<: ",
    "&a ",
    "*a",
    "!!binary ",
    "!!python/object:os.system ",
    "!!timestamp ",
    "1:20",
    "0755",
    "on",
    "~",
    ".inf",
    ".nan",
    "2024-02-30",
    "9" * 4400,
    "[" * 200,
    "{" * 200,
    "- " * 100,
    "---\n",
    "...\n",
    "%YAML 1.1\n",
]


def own_configs() -> list[str]:
    """The configuration texts the project's own fixtures and tests use."""
    texts = [legacy.legacy_configmap()["data"][kyma.CONFIG_KEY]]
    for path in sorted(FIXTURES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
                texts += [v for v in (doc.get("data") or {}).values() if isinstance(v, str)]
    return texts


def fleet_configs() -> list[str]:
    if not FLEET.exists():
        pytest.skip(f"{FLEET} is absent (it is only there next to a CI checkout)")
    return [
        doc["data"][planning.CONFIG_KEY]
        for doc in yaml.safe_load_all(FLEET.read_text())
        if isinstance(doc, dict) and planning.CONFIG_KEY in (doc.get("data") or {})
    ]


def mutate(rng: random.Random, text: str) -> str:
    """One to four edits of the kinds people and broken tools make."""
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(text) + 1)
        kind = rng.randrange(8)
        if kind == 0:  # insert something special
            text = text[:at] + rng.choice(SPECIAL) + text[at:]
        elif kind == 1:  # delete a span
            text = text[:at] + text[at + rng.randint(1, 40) :]
        elif kind == 2:  # duplicate a span
            span = text[at : at + rng.randint(1, 80)]
            text = text[:at] + span + span + text[at:]
        elif kind == 3:  # replace a character by a random code point
            text = text[:at] + chr(rng.randrange(0x110000)) + text[at + 1 :]
        elif kind == 4:  # swap two lines (indentation goes wrong)
            lines = text.split("\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif kind == 5:  # re-indent a line
            lines = text.split("\n")
            i = rng.randrange(len(lines))
            lines[i] = " " * rng.randint(0, 9) + lines[i].lstrip(" ")
            text = "\n".join(lines)
        elif kind == 6:  # replace a value by a special one
            lines = text.split("\n")
            i = rng.randrange(len(lines))
            if ": " in lines[i]:
                key, _, _ = lines[i].partition(": ")
                lines[i] = f"{key}: {rng.choice(SPECIAL)}"
            text = "\n".join(lines)
        else:  # truncate
            text = text[:at]
    return text


def random_text(rng: random.Random) -> str:
    size = rng.choice([1, 2, 8, 64, 512])
    raw = bytes(rng.randrange(256) for _ in range(size))
    decode: list[Callable[[bytes], str]] = [
        lambda b: b.decode("utf-8", "replace"),
        lambda b: b.decode("latin-1"),
        lambda b: b.decode("utf-8", "surrogateescape"),
    ]
    return rng.choice(decode)(raw)


def check(text: str) -> dict[str, Any] | None:
    """Parse as the migrator does; a refusal must name where, anything else is a bug."""
    try:
        parsed = parse_yaml_document(text, WHERE)
    except RefusedError as err:
        assert str(err).startswith(WHERE), str(err)
        return None
    return parsed.data


def _spec_schema() -> dict[str, Any]:
    crd = legacy.fixture("crd-connectivityproxy.yaml")
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec: dict[str, Any] = schema["properties"]["spec"]
    return spec


SPEC_SCHEMA = _spec_schema()


def plan_with(text: str) -> None:
    """The pure planning step too (with the CRD's schema, so fields it types as text are read
    as text): whatever the parser lets through, planning refuses or plans, never raises
    anything else."""
    configmap = legacy.legacy_configmap()
    configmap["data"][kyma.CONFIG_KEY] = text
    cr = legacy.default_cr()
    cr["metadata"]["resourceVersion"] = "1"  # as read from a cluster
    inputs = planning.Inputs(
        cr=cr,
        config_map=configmap,
        info_map=legacy.legacy_info(),
        statefulset=legacy.legacy_statefulset()["metadata"],
        secrets_found=dict.fromkeys(planning.SERVICE_KEY_SECRETS, True),
        spec_schema=SPEC_SCHEMA,
    )
    with contextlib.suppress(RefusedError):
        planning.plan(inputs)


def cases(rng: random.Random, sources: list[str], count: int) -> Iterator[str]:
    for _ in range(count):
        yield mutate(rng, rng.choice(sources))


def test_random_bytes_never_crash_the_parser() -> None:
    rng = random.Random(SEED)
    for number in range(2000):
        text = random_text(rng)
        try:
            check(text)
        except Exception as err:
            raise AssertionError(f"case {number} (seed {SEED}): {text!r}") from err


@pytest.mark.parametrize("source", ["own", "fleet"])
def test_mutated_configs_never_crash_the_parser_or_the_plan(source: str) -> None:
    sources = own_configs() if source == "own" else fleet_configs()
    assert sources
    rng = random.Random(f"{SEED}-{source}")
    parsed = refused = 0
    for number, text in enumerate(cases(rng, sources, 2000)):
        try:
            if check(text) is None:
                refused += 1
            else:
                parsed += 1
                plan_with(text)
        except Exception as err:
            raise AssertionError(f"case {number} (seed {SEED}-{source}): {text!r}") from err
    # Both outcomes occur, or the mutations would prove little.
    assert parsed > 100 and refused > 100, (parsed, refused)


def test_every_fleet_config_parses_unchanged() -> None:
    for text in fleet_configs():
        assert check(text) is not None
