"""Operability against the real control plane (issue 14): YAML 1.1 warnings, cp-status on
Terminating and forbidden objects, signals, progress."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from common import kyma
from common.cluster.client import resource_path
from common.cr import CR_PATH, is_marked
from common.errors import ApiError
from hack.devenv import legacy
from hack.devenv.cluster import REPO, Cluster, ToolResult
from tests.support import chain
from tests.support.chain import BACKUP, CLEANER, MIGRATOR
from tests.support.faultproxy import FaultProxy, Rule, delay, hook

STATUS_ENTRY = "cleaner.status_cli:main"

KEY = kyma.CONFIG_KEY
BASE = legacy.legacy_configmap()["data"][KEY]


def test_a_yaml11_reading_is_migrated_with_a_warning_naming_field_and_value(
    cluster: Cluster,
) -> None:
    # 7:23 is 7 * 60 + 23 = 443 in YAML 1.1: valid for the CRD, so migrated, but never silently.
    assert "externalPort: 443" in BASE
    legacy.install(cluster, config_text=BASE.replace("externalPort: 443", "externalPort: 7:23"))
    result = chain.run_in_process(MIGRATOR, cluster.kubeconfig)
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if "sexagesimal" in line]
    assert line.startswith("WARNING")
    assert ".servers.businessDataTunnel.externalPort" in line
    assert "'7:23'" in line and "the value taken is 443" in line
    cr = cluster.cr()
    assert cr is not None
    assert cr["spec"]["config"]["servers"]["businessDataTunnel"]["externalPort"] == 443


def test_a_configuration_without_surprises_gives_no_yaml11_warning(cluster: Cluster) -> None:
    legacy.install(cluster, config_text=BASE)
    result = chain.run_in_process(MIGRATOR, cluster.kubeconfig)
    assert result.exit_code == 0, result.output
    assert "YAML 1.1" not in result.output


# -- cp-status: Terminating, being deleted, forbidden (item 6) ---------------------------------

HOLD = "cp-migration.test/hold"  # a finalizer, as an operator or a person leaves one


def status_of(cluster: Cluster, *args: str, kubeconfig: Path | None = None) -> ToolResult:
    return cluster.run(STATUS_ENTRY, *args, kubeconfig=kubeconfig)


def test_status_shows_a_terminating_backup_namespace_and_objects_being_deleted(
    cluster: Cluster,
) -> None:
    legacy.fresh_install(cluster)
    for step in (MIGRATOR, BACKUP):
        assert chain.run_in_process(step, cluster.kubeconfig).exit_code == 0
    held = [
        resource_path("apps", "v1", "statefulsets", "kyma-system", "connectivity-proxy"),
        CR_PATH,
    ]
    namespace = resource_path("", "v1", "namespaces", name=kyma.BACKUP_NAMESPACE)
    try:
        for path in held:
            cluster.kube.merge_patch(path, {"metadata": {"finalizers": [HOLD]}}, retry_safe=True)
            cluster.kube.delete(path)
        # No controller manager: the namespace stays Terminating, its backups still inside.
        cluster.kube.delete(namespace)

        found = json.loads(status_of(cluster, "-o", "json").stdout)
        assert found["backup"]["terminating"] is True
        assert found["cr"]["beingDeleted"] is True
        assert "statefulsets.apps kyma-system/connectivity-proxy" in found["legacy"]["beingDeleted"]
        result = status_of(cluster)
        assert result.exit_code == 0, result.output
        rows = dict(line.split("  ", 1) for line in result.stdout.splitlines()[1:7])
        backup_row = rows[f"backup {kyma.BACKUP_NAMESPACE}"].strip()
        assert backup_row.startswith("namespace Terminating (being deleted)"), backup_row
        assert "being deleted (Terminating)" in rows["CR kyma-system/connectivity-proxy"]
        assert "being deleted" in rows["legacy installation"]
        assert "statefulsets.apps kyma-system/connectivity-proxy  (being deleted)" in (
            result.stdout
        )
    finally:
        for path in held:
            with contextlib.suppress(ApiError):
                cluster.kube.merge_patch(path, {"metadata": {"finalizers": None}}, retry_safe=True)
        cluster.finalize_namespace(kyma.BACKUP_NAMESPACE)


def _identity(cluster: Cluster, tmp_path: Path, rules: list[dict[str, Any]]) -> Path:
    name = "cp-status-reader"
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": "kyma-system"},
        }
    ]
    if rules:
        objects += [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": name, "namespace": "kyma-system"},
                "rules": rules,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": "kyma-system"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "kyma-system"}],
            },
        ]
    cluster.apply(objects)
    return cluster.token_kubeconfig("kyma-system", name, tmp_path / "kubeconfig")


def test_status_with_every_read_forbidden_says_so_per_row_and_exits_1(
    cluster: Cluster, tmp_path: Path
) -> None:
    legacy.install(cluster)
    kubeconfig = _identity(cluster, tmp_path, [])
    result = status_of(cluster, kubeconfig=kubeconfig)
    assert result.exit_code == 1, result.output
    rows = result.stdout.splitlines()[1:7]
    assert len(rows) == 6
    for row in rows:
        assert "unknown (forbidden: GET " in row, row
    assert "could read nothing" in result.stderr
    result = status_of(cluster, "-o", "json", kubeconfig=kubeconfig)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["cr"]["status"] == 403


def test_status_with_some_reads_forbidden_shows_the_rest_and_exits_0(
    cluster: Cluster, tmp_path: Path
) -> None:
    legacy.install(cluster)
    rules = [
        {
            "apiGroups": ["connectivityproxy.sap.com"],
            "resources": ["connectivityproxies"],
            "verbs": ["get"],
        }
    ]
    result = status_of(cluster, kubeconfig=_identity(cluster, tmp_path, rules))
    assert result.exit_code == 0, result.output
    rows = dict(line.split("  ", 1) for line in result.stdout.splitlines()[1:8])
    assert rows["CR kyma-system/connectivity-proxy"].strip().startswith("exists, state")
    assert (
        "unknown (forbidden: "
        in rows["operator Deployment kyma-system/connectivity-proxy-operator"]
    )


# -- signals (item 4) ---------------------------------------------------------------------------

MAPPINGS = 600
TOTAL = MAPPINGS + 2  # the standard installation has two of its own


def install_with_mappings(cluster: Cluster, count: int = MAPPINGS) -> None:
    """The standard installation, migrated and backed up, with `count` ServiceMappings: a
    cluster a cleaner takes a few seconds on."""
    legacy.fresh_install(cluster)
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: cluster.kube.create(
                    resource_path(*legacy.SERVICE_MAPPINGS), legacy.service_mapping(f"sm-{i:04d}")
                ),
                range(count),
            )
        )
    for step in (MIGRATOR, BACKUP):
        result = chain.run_in_process(step, cluster.kubeconfig)
        assert result.exit_code == 0, result.output


@dataclass
class Interruption:
    exit_code: int
    lines: list[dict[str, Any]]
    output: str
    seconds_to_exit: float


def start_tool(module: str, kubeconfig: Path, *args: str) -> subprocess.Popen[str]:
    """`python -m module` as its own process, logging JSON lines unbuffered to its stderr."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            module,
            "--kubeconfig",
            str(kubeconfig),
            "--log-format",
            "json",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def interrupt_cleaner(
    cluster: Cluster, signum: int, when: Callable[[dict[str, Any]], bool]
) -> Interruption:
    """Run cp-cleaner as its own process (JSON logs, debug) and send `signum` as soon as a
    log line satisfies `when`."""
    process = start_tool("cleaner", cluster.kubeconfig, "-v")
    assert process.stderr is not None
    lines: list[dict[str, Any]] = []
    raw: list[str] = []
    sent_at = None
    for text in process.stderr:
        raw.append(text)
        try:
            line = json.loads(text)
        except ValueError:
            continue
        lines.append(line)
        if sent_at is None and when(line):
            process.send_signal(signum)
            sent_at = time.monotonic()
    out, _ = process.communicate(timeout=60)
    assert sent_at is not None, "the trigger line never came:\n" + "".join(raw)
    return Interruption(process.returncode, lines, out + "".join(raw), time.monotonic() - sent_at)


def nth(
    count: int, predicate: Callable[[dict[str, Any]], bool]
) -> Callable[[dict[str, Any]], bool]:
    seen = [0]

    def check(line: dict[str, Any]) -> bool:
        if predicate(line):
            seen[0] += 1
        return seen[0] >= count

    return check


POINTS: dict[str, Callable[[], Callable[[dict[str, Any]], bool]]] = {
    # the first line the cleaner logs: before, or just at, its first write
    "at the start": lambda: lambda line: True,
    "after the legacy webhook was deleted": lambda: (
        lambda line: (
            str(line.get("msg", "")).startswith("deleted:")
            and str(line.get("kind")).startswith("validatingwebhookconfigurations")
        )
    ),
    "in the middle of the ServiceMapping hand-over": lambda: nth(
        100, lambda line: line.get("msg") == "handed over"
    ),
    "during the deletions after the hand-over": lambda: (
        lambda line: line.get("msg") == "ServiceMappings handed over"
    ),
}


def handed_over(cluster: Cluster) -> int:
    return sum(
        1
        for item in cluster.kube.list(resource_path(*legacy.SERVICE_MAPPINGS))
        if (item["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by")
        == "sap.connectivity.proxy.operator"
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_at_any_point_is_one_line_exit_1_and_a_rerun_completes(
    cluster: Cluster, signum: int
) -> None:
    name = signal.Signals(signum).name
    report = []
    for point, trigger in POINTS.items():
        install_with_mappings(cluster)
        run = interrupt_cleaner(cluster, signum, trigger())
        report.append(f"{name} {point}: exit {run.exit_code} after {run.seconds_to_exit:.2f}s")
        assert "Traceback" not in run.output, run.output
        assert run.seconds_to_exit < 10, run.output
        interrupted = [line for line in run.lines if "interrupted by" in str(line.get("msg"))]
        cr = cluster.cr()
        assert cr is not None
        marked = is_marked(cr, kyma.ANNOTATION_CLEANED)
        if run.exit_code == 0:
            # The run ended before the signal was handled: done, and said so.
            assert marked and not interrupted, run.output
        else:
            assert run.exit_code == 1, run.output
            assert len(interrupted) == 1, run.output
            message = str(interrupted[0]["msg"])
            report.append(f"  {message}")
            assert message.startswith(f"interrupted by {name}"), message
            assert "done: " in message and "Remains: " in message, message
            assert interrupted[0]["level"] == "error"
            if point == "in the middle of the ServiceMapping hand-over":
                count = int(
                    message.split(f" of {TOTAL} ServiceMappings handed over")[0].split()[-1]
                )
                assert 100 <= count < TOTAL, message
                assert f"{TOTAL - count} ServiceMappings to hand over" in message
                assert "webhook-secret deleted first" in message
                # What the line says matches the cluster (patches in flight were finished).
                assert handed_over(cluster) == count
            if not marked:
                assert (
                    f"the mark {kyma.ANNOTATION_CLEANED}" in message
                    or "all of this step's work" in message
                ), message
        # The kubelet starts the container again: it completes.
        rerun = chain.run_in_process(CLEANER, cluster.kubeconfig)
        assert rerun.exit_code == 0, rerun.output
        cr = cluster.cr()
        assert cr is not None and is_marked(cr, kyma.ANNOTATION_CLEANED)
        assert handed_over(cluster) == TOTAL
    print("\n".join(report))


# -- progress (item 5) --------------------------------------------------------------------------


def progress_lines(output: str) -> list[dict[str, Any]]:
    found = []
    for text in output.splitlines():
        with contextlib.suppress(ValueError):
            line = json.loads(text)
            if isinstance(line, dict) and line.get("logger") == "progress":
                found.append(line)
    return found


def test_a_short_run_prints_no_progress(cluster: Cluster) -> None:
    legacy.fresh_install(cluster)
    for step in chain.CHAIN:
        result = chain.run_in_process(step, cluster.kubeconfig, "--log-format", "json")
        assert result.exit_code == 0, result.output
        assert progress_lines(result.output) == [], result.output
        assert "progress" not in result.output


def test_a_long_hand_over_logs_progress_at_most_every_2_seconds(
    cluster: Cluster, fault_proxy: FaultProxy
) -> None:
    install_with_mappings(cluster, 200)
    # Each hand-over patch answered 0.4 s late: 200 / 16 workers * 0.4 s = about 5 s.
    fault_proxy.add(
        Rule(delay(0.4), method="PATCH", path="/apis/connectivityproxy.sap.com/v1/.*", times=None)
    )
    result = chain.run_in_process(
        CLEANER, fault_proxy.kubeconfig, "--log-format", "json", env={"CP_REQUEST_TIMEOUT": "10"}
    )
    assert result.exit_code == 0, result.output
    lines = progress_lines(result.output)
    assert lines, result.output
    stamps = [
        datetime.strptime(str(line["ts"]), "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() for line in lines
    ]
    gaps = [later - earlier for earlier, later in itertools.pairwise(stamps)]
    assert all(gap >= 1.9 for gap in gaps), gaps
    handover = [line for line in lines if line["phase"] == "ServiceMappings handed over"]
    assert handover, lines
    assert all(line["total"] == 202 and int(line["done"]) <= 202 for line in handover), handover
    assert all(float(line["rate"]) > 0 for line in handover)


CR_WRITE = CR_PATH


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("step", ["migrator", "backup", "cleaner"])
def test_a_signal_while_the_marking_write_is_in_flight(
    cluster: Cluster, fault_proxy: FaultProxy, step: str, signum: int
) -> None:
    """The signal lands while the step's write of its mark is on the wire (the proxy signals
    the tool as the request passes, then forwards it): the request is abandoned, the line says
    so, exit 1; whether or not the write landed, the rerun finishes the step."""
    legacy.fresh_install(cluster)
    for before in chain.CHAIN[: [s.name for s in chain.CHAIN].index(f"cp-{step}")]:
        assert chain.run_in_process(before, cluster.kubeconfig).exit_code == 0
    process = start_tool(step, fault_proxy.kubeconfig)
    fault_proxy.add(
        Rule(
            hook(lambda: process.send_signal(signum)),
            method="PATCH",
            path=re.escape(CR_WRITE),
            dry_run=False,
        )
    )
    out, err = process.communicate(timeout=60)
    output = out + err
    name = signal.Signals(signum).name
    assert "Traceback" not in output, output
    assert process.returncode == 1, output
    interrupted = [line for line in output.splitlines() if f"interrupted by {name}" in line]
    assert len(interrupted) == 1, output
    assert "Remains: " in interrupted[0]
    step_of = {s.name: s for s in chain.CHAIN}[f"cp-{step}"]
    again = chain.run_in_process(step_of, cluster.kubeconfig)
    assert again.exit_code == 0, again.output
    cr = cluster.cr()
    assert cr is not None
    annotation = {
        "migrator": kyma.ANNOTATION_MIGRATED,
        "backup": kyma.ANNOTATION_BACKED_UP,
        "cleaner": kyma.ANNOTATION_CLEANED,
    }[step]
    assert is_marked(cr, annotation)
