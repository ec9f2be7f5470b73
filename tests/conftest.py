"""Session-wide real control plane (kube-apiserver + etcd on 127.0.0.1) and per-test reset."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack.devenv.cluster import FIXTURES, SHARED_FIXTURES, Cluster
from hack.devenv.controlplane import ControlPlane
from hack.devenv.legacy import fresh_install
from hack.devenv.pods import label_namespace_restricted, remove_deployment
from tests.support.faultproxy import FaultProxy
from tests.support.node import NodeCluster
from tests.support.node import session as node_session

CP_CRD = FIXTURES / "crd-connectivityproxy.yaml"


@pytest.fixture(scope="session")
def control_plane() -> Iterator[Cluster]:
    """A control plane for the whole session; CP_TEST_KUBECONFIG reuses a running one."""
    existing = os.environ.get("CP_TEST_KUBECONFIG")
    if existing:
        audit = os.environ.get("CP_TEST_AUDIT_LOG")
        yield Cluster(Path(existing), Path(audit) if audit else None)
        return
    folder = Path(tempfile.mkdtemp(prefix="cp-test-controlplane-"))
    plane = ControlPlane(folder)
    plane.start()
    try:
        cluster = Cluster(plane.kubeconfig, plane.audit_log)
        cluster.apply_file(CP_CRD)
        yield cluster
    finally:
        plane.stop()


@pytest.fixture
def cluster(control_plane: Cluster) -> Iterator[Cluster]:
    """The control plane with the ConnectivityProxy CRD installed and no test objects left."""
    control_plane.reset()
    control_plane.apply_file(CP_CRD)
    yield control_plane


@pytest.fixture
def fault_proxy(cluster: Cluster, tmp_path: Path) -> Iterator[FaultProxy]:
    """A TLS fault proxy in front of the control plane; tools reach it via its kubeconfig."""
    with FaultProxy(cluster.kubeconfig, tmp_path) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def node() -> Iterator[NodeCluster]:
    """A real node (kubelet, containerd, controller-manager, scheduler) beside a control plane
    of its own, with the step images loaded; skipped where the machine cannot run it (a
    failure under CI). Per module, so that it stops once its tests are done instead of
    running beside the rest of the suite. See hack/devenv/node/."""
    yield from node_session()


@pytest.fixture
def node_cluster(node: NodeCluster) -> Iterator[NodeCluster]:
    """The node's cluster with no operator Deployment or Pods and a standard legacy
    installation (tests/support/chain.py), in a kyma-system that enforces `restricted`."""
    remove_deployment(node.cluster)
    fresh_install(node.cluster)
    label_namespace_restricted(node.cluster)
    yield node


@pytest.fixture
def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"{SHARED_FIXTURES} is not present")
    return SHARED_FIXTURES


@pytest.fixture(autouse=True)
def _forget_redacted_values() -> Iterator[None]:
    """Values masked by value (common.redact) are remembered for a process's life: one run
    of a tool. Tests run many tools in one process, so each starts from nothing remembered."""
    from common import redact

    redact.forget_all()
    yield
    redact.forget_all()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()) or "control_plane" in getattr(
            item, "fixturenames", ()
        ):
            item.add_marker(pytest.mark.cluster)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the tables the reliability tests collected (crash points, fault timings)."""
    from tests.support.reports import REPORTS

    for title, text in REPORTS:
        terminalreporter.write_sep("=", title)
        terminalreporter.write_line(text)
