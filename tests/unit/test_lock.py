"""Pure unit: the images' lock file pins every runtime dependency, with hashes, inside the
range pyproject.toml declares (`make lock` writes it)."""

from __future__ import annotations

import re
import tomllib

import pytest

from hack.devenv.cluster import REPO

packaging_requirements = pytest.importorskip("packaging.requirements")


def test_the_lock_pins_every_dependency_with_hashes_inside_the_declared_range() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lock = (REPO / "requirements.lock").read_text()
    pins = {
        name.lower().replace("_", "-"): version
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", lock, re.MULTILINE)
    }
    for entry in re.split(r"\n(?=[A-Za-z])", lock.split("\n\n", 1)[-1]):
        if "==" in entry:
            assert "--hash=sha256:" in entry, entry.splitlines()[0]
    for text in declared:
        requirement = packaging_requirements.Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in requirements.lock: run make lock"
        assert requirement.specifier.contains(pins[name]), (name, pins[name], text)
