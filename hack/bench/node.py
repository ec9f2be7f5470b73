"""`make bench`, on a real node: from applying deploy/ (as `kubectl apply -k` does) to the
operator container Running, per step and in total, on a standard legacy installation.

The node is hack/devenv/node/'s (kubelet, containerd, runc, controller-manager,
scheduler); the images are the test images (hack/devenv/images.py) and the stand-in
operator. Step times come from containerd's task events (nanoseconds): a step's `run` is its
container's process from start to exit (Python's start-up included), its `gap` is what the
kubelet and containerd spend between the previous container's exit (or, for the first step,
the apply) and this one's start: sandbox, network, volumes, container creation. The total is
measured twice: to the operator's task start, and to the moment the API shows the operator
container running (what `kubectl get pod` would show).

    .venv/bin/python -m hack.bench.node [--runs 5]   # prints the section; `make bench`
                                                      # includes it in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hack.devenv import legacy, pods
from hack.devenv.cluster import FIXTURES, Cluster
from hack.devenv.images import build_images
from hack.devenv.node import components
from hack.devenv.node.host import unavailable_reason
from hack.devenv.node.node import Node, stop

PHASES = ("migrator", "backup", "cleaner", "operator")


@dataclass
class NodeRun:
    seconds_to_task: float  # apply -> the operator's task started (containerd)
    seconds_to_api: float  # apply -> the API shows the operator container running
    gaps: dict[str, float]  # phase -> seconds between the previous exit (or apply) and its start
    runs: dict[str, float]  # step -> seconds its container's process ran


@dataclass
class NodeBench:
    runs: list[NodeRun] = field(default_factory=list)
    skipped: str = ""  # why it was not measured
    versions: dict[str, str] = field(default_factory=dict)
    ready_seconds: float = 0.0  # node start -> Ready (first start)
    added_mib: float = 0.0  # resident memory of the node's processes

    def median(self, pick: str, phase: str = "") -> float:
        values = []
        for run in self.runs:
            if pick in ("gaps", "runs"):
                values.append(getattr(run, pick).get(phase, 0.0))
            else:
                values.append(getattr(run, pick))
        return float(statistics.median(values))

    def spread(self, pick: str) -> str:
        values = [getattr(run, pick) for run in self.runs]
        return f"{min(values):.2f}-{max(values):.2f}"


class TaskEvents:
    """`ctr events` of the node's containerd: task start/exit times by container id."""

    def __init__(self, node: Node) -> None:
        self.started: dict[str, float] = {}
        self.exited: dict[str, float] = {}
        self.process = subprocess.Popen(
            ["ctr", "--address", node.containerd_address, "events"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            # 2026-11-29 23:21:34.123456789 +0000 UTC k8s.io /tasks/start {"container_id":...}
            parts = line.split(" ", 6)
            if len(parts) < 7 or parts[5] not in ("/tasks/start", "/tasks/exit"):
                continue
            stamp = datetime.datetime.strptime(
                f"{parts[0]} {parts[1][:15]}", "%Y-%m-%d %H:%M:%S.%f"
            ).replace(tzinfo=datetime.UTC)
            payload = json.loads(parts[6])
            key = payload.get("container_id") or payload.get("id") or ""
            target = self.started if parts[5] == "/tasks/start" else self.exited
            target.setdefault(key, stamp.timestamp())

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def _container_id(status: dict[str, object]) -> str:
    return str(status.get("containerID") or "").rpartition("://")[2]


def measure_once(node: Node, cluster: Cluster, objects: list[dict[str, Any]]) -> NodeRun:
    pods.remove_deployment(cluster)
    legacy.fresh_install(cluster)
    pods.label_namespace_restricted(cluster)
    events = TaskEvents(node)
    time.sleep(0.5)  # the event stream is subscribed
    try:
        applied = time.time()
        pods.apply_deploy(cluster, objects)
        pod = pods.wait_for(
            "the operator running",
            lambda: next((p for p in pods.live_pods(cluster) if pods.operator_running(p)), None),
            180,
            interval=0.05,
            explain=lambda: pods.describe(cluster),
        )
        seen_running = time.time()
        time.sleep(0.5)
    finally:
        events.close()
    statuses = {s["name"]: s for s in pod["status"]["initContainerStatuses"]}
    statuses["operator"] = pod["status"]["containerStatuses"][0]
    gaps, runs = {}, {}
    previous_end = applied
    for phase in PHASES:
        cid = _container_id(statuses[phase])
        start = events.started.get(cid)
        if start is None:
            raise RuntimeError(f"no task start seen for {phase} ({cid})")
        gaps[phase] = start - previous_end
        if phase != "operator":
            end = events.exited.get(cid)
            if end is None:
                raise RuntimeError(f"no task exit seen for {phase} ({cid})")
            runs[phase] = end - start
            previous_end = end
    operator_start = events.started[_container_id(statuses["operator"])]
    return NodeRun(
        seconds_to_task=operator_start - applied,
        seconds_to_api=seen_running - applied,
        gaps=gaps,
        runs=runs,
    )


def _rss_mib(node: Node) -> float:
    """Resident memory of the node side: containerd, kubelet, controller-manager, scheduler and
    the shims (not the apiserver and etcd, which the suite runs anyway)."""
    total = 0
    pids = [
        int(entry[0])
        for name, entry in node.state.get("processes", {}).items()
        if name not in ("kube-apiserver", "etcd")
    ]
    address = node.containerd_address.encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            if int(proc.name) in pids or (b"containerd-shim" in args[0] and address in args):
                for line in (proc / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except (OSError, IndexError):
            continue
    return total / 1024


def run(runs: int = 5, log: bool = True) -> NodeBench:
    reason = unavailable_reason()
    if reason:
        return NodeBench(skipped=reason)
    images = build_images()
    folder = Path(tempfile.mkdtemp(prefix="cp-bench-node-"))
    node = Node(folder)
    started = time.monotonic()
    node.start()
    result = NodeBench(ready_seconds=time.monotonic() - started)
    try:
        node.load_images(list(images.refs.values()))
        cluster = Cluster(node.kubeconfig)
        cluster.apply_file(FIXTURES / "crd-connectivityproxy.yaml")
        operator = node.state["operator_image"]
        objects = pods.kustomize(images=pods.deploy_images(dict(images.refs), operator))
        measure_once(node, cluster, objects)  # warm-up: first use of each image unpacks it
        for index in range(runs):
            found = measure_once(node, cluster, objects)
            result.runs.append(found)
            if log:
                steps = ", ".join(
                    f"{p} +{found.gaps[p]:.2f}/{found.runs.get(p, 0):.2f}" for p in PHASES
                )
                print(
                    f"   run {index + 1}: {found.seconds_to_task:.2f} s to the operator "
                    f"({found.seconds_to_api:.2f} s in the API); {steps}"
                )
        result.added_mib = _rss_mib(node)
        result.versions = {
            "kubelet": _version(str(components.node_binaries() / "kubelet"), -1),
            "containerd": _version("containerd", 2),
            "runc": _version("runc", 2),
        }
    finally:
        problems = stop(folder)
        if not problems:
            shutil.rmtree(folder, ignore_errors=True)
    return result


def _version(program: str, word: int) -> str:
    """A word of the first line `program --version` prints ("?" when there is none)."""
    out = subprocess.run([program, "--version"], capture_output=True, text=True, check=False)
    words = (out.stdout or out.stderr).split()
    return words[word] if -len(words) <= word < len(words) else "?"


def render(bench: NodeBench) -> list[str]:
    """The node section of docs/benchmarks.md (its prose: node.md), as lines."""
    from hack.bench.report import fill, table

    if bench.skipped:
        return fill("node.md", "node-skipped", why=bench.skipped).split("\n")
    rows: list[tuple[str, ...]] = []
    for phase in PHASES:
        gap = bench.median("gaps", phase)
        if phase == "operator":
            rows.append((phase, f"{gap:.2f}", "-", f"{gap:.2f} (to its start)"))
            continue
        run_s = bench.median("runs", phase)
        both = statistics.median(r.gaps[phase] + r.runs[phase] for r in bench.runs)
        rows.append((phase, f"{gap:.2f}", f"{run_s:.2f}", f"{both:.2f}"))
    header = ("phase", "gap before it, s", "run, s", "the step in all (gap + run), s")
    text = fill(
        "node.md",
        "node",
        kubelet=bench.versions.get("kubelet", "?"),
        containerd=bench.versions.get("containerd", "?"),
        runc=bench.versions.get("runc", "?"),
        runs=len(bench.runs),
        phases=table(header, rows),
        to_task=f"{bench.median('seconds_to_task'):.2f}",
        to_task_spread=bench.spread("seconds_to_task"),
        to_api=f"{bench.median('seconds_to_api'):.2f}",
        to_api_spread=bench.spread("seconds_to_api"),
        ready=f"{bench.ready_seconds:.1f}",
        rss=f"{bench.added_mib:.0f}",
    )
    return text.split("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    print("\n".join(render(run(args.runs))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
