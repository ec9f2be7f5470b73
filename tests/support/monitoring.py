"""The fleet view's real parts: kube-state-metrics v2.20.0 and promtool, built from their Go
modules by hack/monitoring/build.sh (`make monitoring-tools`, a prerequisite of `make test`),
and kube-state-metrics run against the test apiserver with deploy/monitoring's configuration
and RBAC, as its own ServiceAccount (no cluster-admin)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.devenv.cluster import REPO, Cluster

BUILD_SCRIPT = REPO / "hack" / "monitoring" / "build.sh"
MONITORING = REPO / "deploy" / "monitoring"
KSM_CONFIG = MONITORING / "kube-state-metrics-config.yaml"
KSM_RBAC = MONITORING / "rbac.yaml"
RULES = MONITORING / "rules.yaml"
RULES_TEST = MONITORING / "rules.test.yaml"
PREFIX = "connectivityproxy_migration"


def _missing(reason: str) -> None:
    """Skipped on a developer machine, naming what is missing; a failure under CI=true."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}; under CI the fleet-view tests must run (make monitoring-tools)")
    pytest.skip(f"{reason}; set CI=true to make this a failure")


def tool(name: str) -> Path:
    """The built binary (kube-state-metrics or promtool); skipped, naming it, when absent."""
    found = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--where", name], capture_output=True, text=True, check=False
    )
    if found.returncode != 0:
        _missing(found.stderr.strip() or f"{name} is not built")
    return Path(found.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition."""
    found = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match:
            labels = dict(_LABEL.findall(match.group(2) or ""))
            found.append(Sample(match.group(1), labels, float(match.group(3))))
    return found


class KubeStateMetrics:
    """kube-state-metrics as a process, with deploy/monitoring's config and its own identity."""

    def __init__(self, cluster: Cluster, folder: Path) -> None:
        self.cluster = cluster
        self.folder = folder
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = tool("kube-state-metrics")
        namespace, account = _service_account()
        self.cluster.ensure_namespace(namespace)
        self.cluster.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": account, "namespace": namespace},
                },
                *yaml.safe_load_all(KSM_RBAC.read_text()),
            ]
        )
        kubeconfig = self.cluster.token_kubeconfig(
            namespace, account, self.folder / "kubeconfig-kube-state-metrics"
        )
        log = (self.folder / "kube-state-metrics.log").open("wb")
        self.process = subprocess.Popen(
            [
                str(binary),
                f"--kubeconfig={kubeconfig}",
                "--host=127.0.0.1",
                f"--port={self.port}",
                "--telemetry-host=127.0.0.1",
                f"--telemetry-port={_free_port()}",
                "--custom-resource-state-only",
                f"--custom-resource-state-config-file={KSM_CONFIG}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                self.metrics()
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kube-state-metrics did not start: {self.log()[-3000:]}")
            time.sleep(0.2)

    def log(self) -> str:
        return (self.folder / "kube-state-metrics.log").read_text(errors="replace")

    def metrics(self) -> list[Sample]:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return parse(answer.read().decode())

    def series(self, metric: str, /, **labels: str) -> list[Sample]:
        """The samples of `{PREFIX}_{metric}` that carry these labels."""
        return [
            sample
            for sample in self.metrics()
            if sample.name == f"{PREFIX}_{metric}"
            and all(sample.labels.get(k) == v for k, v in labels.items())
        ]

    def wait_for(self, metric: str, /, **labels: str) -> list[Sample]:
        """The series once kube-state-metrics' watch has caught up (it is asynchronous)."""
        deadline = time.monotonic() + 20
        while True:
            found = self.series(metric, **labels)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _service_account() -> tuple[str, str]:
    """The ServiceAccount deploy/monitoring/rbac.yaml binds its ClusterRole to."""
    for document in yaml.safe_load_all(KSM_RBAC.read_text()):
        if document.get("kind") == "ClusterRoleBinding":
            subject: dict[str, Any] = document["subjects"][0]
            return str(subject["namespace"]), str(subject["name"])
    raise AssertionError(f"{KSM_RBAC} binds no ServiceAccount")


@contextlib.contextmanager
def kube_state_metrics(cluster: Cluster, folder: Path) -> Iterator[KubeStateMetrics]:
    ksm = KubeStateMetrics(cluster, folder)
    try:
        ksm.start()
        yield ksm
    finally:
        ksm.stop()
