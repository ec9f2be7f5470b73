"""The test session's node: the `node` fixture (tests/conftest.py) on hack.devenv.node,
skipped where the machine cannot run one (a failure under CI)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hack.devenv.node.host import unavailable_reason
from hack.devenv.node.node import Node, stop


def skip_or_fail(reason: str) -> None:
    """Skipped on a developer machine that cannot run the node; a failure under CI."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"{reason}; under CI the node tests must run")
    pytest.skip(f"{reason}; set CI=true to make this a failure")


@dataclass
class NodeCluster:
    """The node's cluster as the tests use it: the admin Cluster, the Node, and the images
    (step name -> reference, and the stand-in operator) loaded into its containerd."""

    cluster: Any  # hack.devenv.cluster.Cluster
    node: Node
    steps: dict[str, str]
    operator: str

    def log(self, pod: dict[str, Any], container: str, previous: bool = False) -> str:
        from hack.devenv.pods import container_log

        return container_log(self.node.api_raw, pod, container, previous)


def enabled_reason() -> str | None:
    """Why the node tests are off on this run, or None (CP_NODE_TESTS=0 turns them off)."""
    if os.environ.get("CP_NODE_TESTS", "1") == "0":
        return "CP_NODE_TESTS=0"
    return None


def session() -> Iterator[NodeCluster]:
    """For the `node` session fixture: skips (fails under CI) where the machine cannot run a
    node; otherwise the node with the step images loaded, stopped at the end."""
    from hack.devenv.cluster import FIXTURES, Cluster
    from hack.devenv.images import build_images

    off = enabled_reason()
    if off:
        import pytest

        pytest.skip(f"node tests switched off ({off})")
    reason = unavailable_reason()
    if reason:
        skip_or_fail(reason)
    images = build_images()
    folder = Path(tempfile.mkdtemp(prefix="cp-node-"))
    node = Node(folder)
    node.start()
    try:
        node.load_images(list(images.refs.values()))
        cluster = Cluster(node.kubeconfig, node.audit_log)
        cluster.apply_file(FIXTURES / "crd-connectivityproxy.yaml")
        yield NodeCluster(cluster, node, dict(images.refs), node.state["operator_image"])
    finally:
        problems = stop(folder)
        if not problems:
            shutil.rmtree(folder, ignore_errors=True)
    if problems:
        raise RuntimeError(f"the node left the host changed: {problems} (state in {folder})")
