"""Builders for a standard legacy installation and the module's default CR, from the
project's own fixtures in tests/fixtures."""

from __future__ import annotations

import copy
from typing import Any

from tests.support.cluster import FIXTURES, Cluster, load_manifests

CONFIG_KEY = "connectivity-proxy-config.yml"


def fixture(name: str) -> dict[str, Any]:
    return load_manifests(FIXTURES / name)[0]


def default_cr() -> dict[str, Any]:
    return fixture("default-cr.yaml")


def legacy_configmap(config_text: str | None = None) -> dict[str, Any]:
    configmap = fixture("legacy-configmap.yaml")
    if config_text is not None:
        configmap["data"] = {CONFIG_KEY: config_text}
    return configmap


def legacy_info(**ports: str) -> dict[str, Any]:
    info = fixture("legacy-info-configmap.yaml")
    info["data"].update(ports)
    return info


def legacy_statefulset() -> dict[str, Any]:
    return fixture("legacy-statefulset.yaml")


def install(
    cluster: Cluster,
    *,
    config_text: str | None = None,
    configmap: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
    with_cr: bool = True,
    with_statefulset: bool = True,
    with_configmap: bool = True,
    with_info: bool = True,
    cr: dict[str, Any] | None = None,
) -> None:
    """A standard legacy installation plus the module's default CR."""
    objects: list[dict[str, Any]] = []
    if with_statefulset:
        objects.append(legacy_statefulset())
    if with_configmap:
        objects.append(configmap or legacy_configmap(config_text))
    if with_info:
        objects.append(info or legacy_info())
    if with_cr:
        objects.append(copy.deepcopy(cr) if cr else default_cr())
    cluster.apply(objects)
