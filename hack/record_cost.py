"""What the fleet view's record costs each step (README "Fleet view"; docs/benchmarks.md):
the requests it adds to a run and the time of its write, counted from the apiserver's audit
log by the tool's User-Agent on a real kube-apiserver and etcd on 127.0.0.1.

    .venv/bin/python -m hack.record_cost [--runs N]

Three situations: a first chain run (each step does its work), the chain run again (nothing
changed: no record write), and a refused migrator run again and again (the record unchanged,
its Warning Event counted). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import kyma
from common.cluster.client import resource_path
from hack.devenv import legacy
from hack.devenv.cluster import FIXTURES, AuditWindow, Cluster
from hack.devenv.controlplane import ControlPlane

CRD = FIXTURES / "crd-connectivityproxy.yaml"
# The init containers in their order, as console scripts of this environment.
CHAIN = ("migrator", "backup", "cleaner")
SCRIPTS = {"migrator": "cp-migrator", "backup": "cp-backup", "cleaner": "cp-cleaner"}


def _run_tool(tool: str, kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    """The tool as an init container runs it: a process of its own, JSON log lines."""
    script = Path(sys.executable).parent / SCRIPTS[tool]
    command = [str(script), "--kubeconfig", str(kubeconfig), "--log-format", "json"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def _seconds(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def tool_requests(window: AuditWindow, tool: str) -> list[dict[str, Any]]:
    """The requests of one tool's run that the apiserver finished, by its User-Agent."""
    return [
        event
        for event in window.events()
        if event.get("stage") == "ResponseComplete"
        and str(event.get("userAgent", "")).startswith(f"cp-migration/{tool}")
    ]


def cr_patches(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The writes of the CR among them (a server-side dry run writes nothing)."""
    return [
        e
        for e in events
        if e.get("verb") == "patch"
        and (e.get("objectRef") or {}).get("resource") == "connectivityproxies"
        and "dryRun" not in str(e.get("requestURI"))
    ]


def _events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if (e.get("objectRef") or {}).get("resource") == "events"]


def _latency(event: dict[str, Any]) -> float:
    return _seconds(event["stageTimestamp"]) - _seconds(event["requestReceivedTimestamp"])


def measure(runs: int) -> str:
    folder = Path(tempfile.mkdtemp(prefix="cp-record-cost-"))
    plane = ControlPlane(folder)
    plane.start()
    try:
        cluster = Cluster(plane.kubeconfig, plane.audit_log)
        cluster.apply_file(CRD)
        rows: dict[str, list[tuple[int, int, int, float | None]]] = {}

        def run(label: str, tool: str) -> None:
            window = AuditWindow(cluster)
            result = _run_tool(tool, cluster.kubeconfig)
            sent = tool_requests(window, tool)
            patches = cr_patches(sent)
            # The record is the last write of the CR in a run that writes it.
            recorded = f'"logger": "{tool}", "msg": "recorded"' in result.stderr
            latency = _latency(patches[-1]) if recorded and patches else None
            rows.setdefault(label, []).append(
                (len(sent), int(recorded), len(_events(sent)), latency)
            )
            if result.returncode not in (0, 3):
                raise SystemExit(f"{label}: exit {result.returncode}\n{result.stderr}")

        for _ in range(runs):
            cluster.reset()
            cluster.apply_file(CRD)
            legacy.fresh_install(cluster)
            for tool in CHAIN:
                run(f"{tool}, first run (does its work)", tool)
            for tool in CHAIN:
                run(f"{tool}, run again (nothing changed)", tool)
        cluster.reset()
        cluster.apply_file(CRD)
        legacy.fresh_install(cluster)
        cluster.kube.merge_patch(
            resource_path("", "v1", "configmaps", kyma.NAMESPACE, "connectivity-proxy"),
            {"data": {kyma.CONFIG_KEY: legacy.shared_mode_config()}},
            retry_safe=True,
        )
        for index in range(runs + 1):
            label = "migrator refused, first time" if index == 0 else "migrator refused again"
            run(label, "migrator")
    finally:
        plane.stop()

    lines = [
        "| run | requests (median) | record writes | Event requests | record write (median) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, found in rows.items():
        latencies = [f[3] for f in found if f[3] is not None]
        took = f"{statistics.median(latencies) * 1000:.1f} ms" if latencies else "-"
        lines.append(
            f"| {label} | {statistics.median(f[0] for f in found):g} | "
            f"{max(f[1] for f in found)} | {max(f[2] for f in found)} | {took} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    print(measure(parser.parse_args(argv).runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
