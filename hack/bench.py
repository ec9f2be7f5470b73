"""`make bench`: each step as a whole process against a real local control plane.

Starts its own kube-apiserver + etcd (tests/support/controlplane.py, audit log at Metadata
level in blocking mode), installs a standard legacy installation, and measures each tool the
way a user or the kubelet runs it: the installed console script, cold, one process per run.
API requests are counted from the audit log by the tool's User-Agent (`cp-migration/<tool>`).
Writes docs/benchmarks.md and docs/benchmarks.png.

    .venv/bin/python -m hack.bench [--runs 5] [--sizes 0,100,1000,5000] [--images auto|no]

Each step is also measured in its image (podman, as the kubelet runs it: read-only root,
UID 1337), when the images are built (`make images`): the step's own process, timed inside
the container by a small wrapper, so podman's own start is not counted.

A benchmark, never a test: nothing here is timed by `make test`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import math
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.cluster.client import Kube, resource_path
from common.cluster.kubeconfig import resolve
from common.errors import ApiError
from tests.support import legacy
from tests.support.cluster import FIXTURES, Cluster
from tests.support.controlplane import ControlPlane, binaries_dir

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
NOTES = Path(__file__).with_name("bench_notes.md")
RESULTS = Path(tempfile.gettempdir()) / "cp-migration-bench-results.pickle"
BENCH_AGENT = "cp-migration-bench"
SENTINEL_AGENT = "cp-migration-bench/sentinel"
BACKUP_NAMESPACE = "connectivity-proxy-backup"
SM_GROUP, SM_VERSION, SM_PLURAL = "connectivityproxy.sap.com", "v1", "servicemappings"
SM_COLLECTION = resource_path(SM_GROUP, SM_VERSION, SM_PLURAL)
# The page size the paging rule implies (and kubectl's default chunk size).
PAGE_SIZE = 500
MIB = 1024 * 1024

# Targets from issue 5, checked by reading this benchmark.
RSS_TARGET_MIB = 80.0
IMAGE_TARGET_S = 0.5
CHAIN_TARGET_S = 1.5
# Inside the container: run the step, report its own wall time, CPU and peak RSS (children).
IMAGE_WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(done.stderr[-2000:] if done.returncode else "")
print(json.dumps({"seconds": seconds, "exit": done.returncode, "rss_kib": usage.ru_maxrss,
                  "cpu": usage.ru_utime + usage.ru_stime}))
"""
# On the host: spawn the step from this small process and report its rusage into a file. Linux
# starts a process's peak RSS at that of the process it was forked from (kept across exec), so
# a step spawned by the bench itself (large by then) would report the bench's peak, not its own.
RUSAGE_WRAPPER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
process = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(process.pid, 0)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as report:
    json.dump({"seconds": seconds, "exit": os.waitstatus_to_exitcode(status),
               "rss_kib": usage.ru_maxrss, "cpu": usage.ru_utime + usage.ru_stime}, report)
"""
HELP_TARGET_S = 0.2
REQUEST_RATIO_TARGET = 1.3
SWEEP_TARGETS_S = {1000: 5.0, 5000: 20.0}
PACKAGES = ("cp-migration", "click", "PyYAML", "urllib3", "kubernetes", "matplotlib")
WATCHED_IMPORTS = (
    "click",
    "yaml",
    "urllib3",
    "ssl",
    "json",
    "http.client",
    "logging",
    "kubernetes",
)


# -- what each step needs, at the least ----------------------------------------------------


@dataclass(frozen=True)
class Need:
    count: int
    why: str


def migrator_minimum(_n: int) -> list[Need]:
    return [
        Need(1, "GET the CR: its spec is merged over and its resourceVersion is the precondition"),
        Need(1, "GET the StatefulSet: a legacy installation exists (its reconciler annotation)"),
        Need(2, "GET the two legacy ConfigMaps (configuration and ports)"),
        Need(
            1,
            "PATCH dry run with strict field validation: the documented server-side check "
            "before the one real write (README, cp-migrator)",
        ),
        Need(1, "PATCH the CR: configuration and the `migrated` mark in one write"),
        Need(1, "POST the Event on the CR"),
    ]


def backup_minimum(_n: int) -> list[Need]:
    return [
        Need(
            1,
            "GET the CR (when it exists the CRD does; the CRD needs a look only after a 404, "
            "to say which of the two is missing)",
        ),
        Need(
            1,
            "POST the backup namespace (absent on this path; a 409 would need a GET to tell "
            "Terminating from present)",
        ),
        Need(2, "GET the two source ConfigMaps"),
        Need(2, "POST the two backups (absent on this path; a 409 means re-observe)"),
        Need(1, "read the backups back: one LIST of the backup namespace by the backup label"),
        Need(1, "PATCH the CR: the `backed-up` mark under its resourceVersion"),
        Need(1, "POST the Event on the CR"),
    ]


def cleaner_minimum(n: int) -> list[Need]:
    pages = max(1, math.ceil(n / PAGE_SIZE))
    needs = [
        Need(1, "GET the CR (marks, and the resourceVersion of the final mark)"),
        Need(1, "GET the ServiceMapping CRD (it exists; its scope)"),
        Need(1, "PATCH the ServiceMapping CRD (annotations and label)"),
        Need(pages, f"LIST the ServiceMappings in pages of {PAGE_SIZE}"),
    ]
    if n:
        needs.append(Need(n, "PATCH each ServiceMapping (none is right yet on this path)"))
    needs += [
        Need(1, "discovery once: GET /apis, aggregated (which legacy kinds the cluster serves)"),
        Need(
            21,
            "read the legacy objects to spare module-owned ones: one metadata LIST per "
            "(resource, namespace) for kinds that carry no payload, and one metadata GET per "
            "name for Secrets, ConfigMaps and Deployments, so that least-privilege RBAC never "
            "grants `list` on kinds holding data in shared namespaces (one GET per object "
            "would be 35)",
        ),
        Need(
            2,
            "permission preflight: one SelfSubjectRulesReview per namespace written in "
            "(kyma-system, istio-system), so a missing permission fails before the first "
            "delete and leaves nothing half done",
        ),
        Need(1, "read the two backups (uid and resourceVersion preconditions): one LIST"),
        Need(35, "DELETE each legacy object present (35 in the standard installation)"),
        Need(1, "PATCH the CR: the `cleaned` mark under its resourceVersion"),
        Need(1, "POST the Event on the CR"),
    ]
    return needs


@dataclass(frozen=True)
class Step:
    tool: str  # the User-Agent is cp-migration/<tool>
    script: str
    module: str
    target_seconds: float
    minimum: Callable[[int], list[Need]]

    @property
    def built(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


STEPS = (
    Step("migrator", "cp-migrator", "migrator.cli", 0.4, migrator_minimum),
    Step("backup", "cp-backup", "backup.cli", 0.4, backup_minimum),
    Step("cleaner", "cp-cleaner", "cleaner.cli", 0.4, cleaner_minimum),
)


# -- measurements --------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    exit_code: int
    max_rss_kib: int
    cpu_seconds: float = 0.0  # the tool's own user + system time
    server_cpu_seconds: float = 0.0  # kube-apiserver + etcd during the run
    requests: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    output: str = ""


@dataclass
class Series:
    runs: list[Run]

    @property
    def seconds(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def spread(self) -> str:
        times = [r.seconds for r in self.runs]
        return f"{min(times):.3f}-{max(times):.3f}"

    @property
    def requests(self) -> int:
        return int(statistics.median(r.requests for r in self.runs))

    @property
    def cpu(self) -> float:
        return statistics.median(r.cpu_seconds for r in self.runs)

    @property
    def server_cpu(self) -> float:
        return statistics.median(r.server_cpu_seconds for r in self.runs)

    @property
    def rss_mib(self) -> float:
        return max(r.max_rss_kib for r in self.runs) / 1024

    @property
    def exit_codes(self) -> str:
        return ",".join(sorted({str(r.exit_code) for r in self.runs}))


def run_process(argv: list[str], env: dict[str, str] | None = None) -> Run:
    """One process, timed from spawn to reaped; its own peak RSS and CPU from its rusage
    (wait4), taken by RUSAGE_WRAPPER."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryDirectory() as cwd:
        report = Path(cwd) / ".rusage.json"
        wrapper_env = dict(env or tool_env())
        if wrapper_env.pop("PYTHONPROFILEIMPORTTIME", None):  # the step's imports, not ours
            argv = ["env", "PYTHONPROFILEIMPORTTIME=1", *argv]
        wrapper = [sys.executable, "-c", RUSAGE_WRAPPER, str(report), *argv]
        subprocess.run(wrapper, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=wrapper_env)
        found = json.loads(report.read_text())
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    return Run(
        found["seconds"], found["exit"], found["rss_kib"], cpu_seconds=found["cpu"], output=text
    )


def cpu_seconds_of(pids: list[int]) -> float:
    """User + system time so far of running processes, from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields_after_name = handle.read().rsplit(")", 1)[1].split()
        total += int(fields_after_name[11]) + int(fields_after_name[12])  # utime, stime
    return total / ticks


def tool_env() -> dict[str, str]:
    # Only --kubeconfig says where the cluster is; nothing from the caller's shell leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CP_", "KUBE"))}
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env


class AuditLog:
    """Requests per tool, read from the apiserver's audit log after a run."""

    def __init__(self, path: Path, kube: Kube) -> None:
        self.path = path
        self.kube = kube
        self.sentinel_kube = Kube(kube.connection, user_agent=SENTINEL_AGENT)

    def offset(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def events_since(self, offset: int) -> list[dict[str, Any]]:
        """Audit events written after `offset`, once a request sent now is in the log: the
        apiserver writes an event when the request completes, so a sentinel request sent
        after the tool exited comes after every request of the tool."""
        self.sentinel_kube.get("/version")
        deadline = time.monotonic() + 10
        while True:
            with open(self.path, "rb") as handle:
                handle.seek(offset)
                lines = handle.read().splitlines()
            events = [json.loads(line) for line in lines if line.strip()]
            if any(e.get("userAgent") == SENTINEL_AGENT for e in events):
                return events
            if time.monotonic() > deadline:
                raise TimeoutError("the sentinel request never reached the audit log")
            time.sleep(0.05)

    def count(self, offset: int, tool: str) -> tuple[int, Counter[str]]:
        agent = f"cp-migration/{tool}"
        by_kind: Counter[str] = Counter()
        seen: set[str] = set()
        for event in self.events_since(offset):
            if event.get("userAgent") != agent or event.get("stage") not in (
                "ResponseComplete",
                "Panic",
            ):
                continue
            if event["auditID"] in seen:
                continue
            seen.add(event["auditID"])
            by_kind[describe(event)] += 1
        return sum(by_kind.values()), by_kind


def describe(event: dict[str, Any]) -> str:
    verb = str(event.get("verb", "?"))
    ref = event.get("objectRef") or {}
    resource = ref.get("resource") or event.get("requestURI", "?").split("?")[0]
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    if verb == "list" and ref.get("name"):
        verb = "get"
    if "dryRun=All" in str(event.get("requestURI", "")):
        verb += " (dry run)"
    code = (event.get("responseStatus") or {}).get("code")
    status = f" →{code}" if code and code >= 300 else ""
    return f"{verb} {resource}{status}"


# -- cluster state -------------------------------------------------------------------------


class Bench:
    def __init__(self, plane: ControlPlane, bin_dir: Path) -> None:
        self.plane = plane
        self.bin_dir = bin_dir
        self.cluster = Cluster(plane.kubeconfig, plane.audit_log)
        self.kube = Kube(resolve(str(plane.kubeconfig), None), user_agent=BENCH_AGENT, pool_size=32)
        self.audit = AuditLog(plane.audit_log, self.kube)

    def script(self, step: Step) -> str:
        return str(self.bin_dir / step.script)

    def argv(self, step: Step, *extra: str) -> list[str]:
        return [self.script(step), "--kubeconfig", str(self.plane.kubeconfig), *extra]

    def fresh_install(self) -> None:
        """A standard legacy installation and the module's default CR, nothing else."""
        self.cluster.reset()
        self.delete_service_mappings()
        self.drop_backup_namespace()
        for name in ("crd-connectivityproxy.yaml", "crds-third-party.yaml"):
            # Re-applied, as the cleaner labels the ServiceMapping CRD.
            self.cluster.apply_file(FIXTURES / name)
        self.cluster.apply_file(FIXTURES / "legacy-objects.yaml")
        self.cluster.apply_file(FIXTURES / "legacy-istio-objects.yaml")
        legacy.install(self.cluster)

    def drop_backup_namespace(self) -> None:
        # So every backup run takes the first-run path (create the namespace).
        path = resource_path("", "v1", "namespaces", name=BACKUP_NAMESPACE)
        if self.kube.get(path) is not None:
            self.kube.delete(path)
            self.cluster.finalize_namespace(BACKUP_NAMESPACE)

    def delete_service_mappings(self) -> None:
        try:
            self.kube.request("DELETE", SM_COLLECTION, retry_safe=True)
        except ApiError as err:
            if err.status == 404:  # the CRD is not installed yet
                return
            raise
        deadline = time.monotonic() + 120
        while any(True for _ in self.kube.list(SM_COLLECTION)):
            if time.monotonic() > deadline:
                raise TimeoutError("ServiceMappings still present after a delete collection")
            time.sleep(0.2)

    def create_service_mappings(self, count: int) -> None:
        def create(index: int) -> None:
            self.kube.create(
                SM_COLLECTION,
                {
                    "apiVersion": f"{SM_GROUP}/{SM_VERSION}",
                    "kind": "ServiceMapping",
                    "metadata": {"name": f"bench-mapping-{index:05d}"},
                    "spec": {
                        "type": "HTTP",
                        "subaccountId": "1b3c5d7e-9f21-4a6b-8c0d-2e4f6a8b0c1d",
                        "serviceId": f"service-{index:05d}",
                        "internalAddress": f"http://backend-{index:05d}.example.svc:8080",
                    },
                },
            )

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(create, range(count)))

    def prepare(self, step: Step, mappings: int = 0) -> None:
        """The state the step starts from in the chain: the steps before it have run."""
        self.fresh_install()
        if mappings:
            self.create_service_mappings(mappings)
        for earlier in STEPS[: STEPS.index(step)]:
            result = run_process(self.argv(earlier, "--log-format", "json"))
            if result.exit_code != 0:
                raise RuntimeError(f"{earlier.script} failed preparing {step.script}:\n{result}")

    def measure(self, step: Step, mappings: int = 0) -> Run:
        self.prepare(step, mappings)
        offset = self.audit.offset()
        server_pids = [p.pid for p in (self.plane.apiserver, self.plane.etcd) if p is not None]
        server_before = cpu_seconds_of(server_pids)
        run = run_process(self.argv(step, "--log-format", "json"))
        run.server_cpu_seconds = cpu_seconds_of(server_pids) - server_before
        run.requests, run.by_kind = self.audit.count(offset, step.tool)
        if run.exit_code != 0:
            print(f"   ! {step.script} exited {run.exit_code}:\n{run.output[-2000:]}")
        return run

    def measure_in_image(self, step: Step, ref: str, kubeconfig: Path) -> Run:
        """The step in its image, as the kubelet runs it; timed inside the container."""
        from tests.support.images import pod_like_args

        self.prepare(step)
        offset = self.audit.offset()
        completed = subprocess.run(
            [
                "podman",
                "run",
                *pod_like_args("host"),
                "-v",
                f"{kubeconfig}:/kube/config:ro",
                "--entrypoint",
                "/opt/cp/bin/python3",
                ref,
                "-c",
                IMAGE_WRAPPER,
                f"/opt/cp/bin/{step.script}",
                "--kubeconfig",
                "/kube/config",
                "--log-format",
                "json",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            found = json.loads(completed.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            print(f"   ! podman run {ref} failed:\n{completed.stdout}{completed.stderr}")
            return Run(0.0, completed.returncode or 1, 0, output=completed.stderr)
        run = Run(found["seconds"], found["exit"], found["rss_kib"], cpu_seconds=found["cpu"])
        run.requests, run.by_kind = self.audit.count(offset, step.tool)
        if run.exit_code != 0:
            print(f"   ! {step.script} in {ref} exited {run.exit_code}:\n{completed.stdout}")
        return run

    def import_profile(self, step: Step) -> dict[str, Any]:
        """One extra, untimed run with PYTHONPROFILEIMPORTTIME: what the real run imports."""
        self.prepare(step)
        env = {**tool_env(), "PYTHONPROFILEIMPORTTIME": "1"}
        run = run_process(self.argv(step, "--log-format", "json"), env)
        return parse_importtime(run.output)


def parse_importtime(text: str) -> dict[str, Any]:
    self_us: dict[str, int] = {}
    cumulative_us: dict[str, int] = {}
    for line in text.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, total, name = (part.strip() for part in line.split(":", 1)[1].split("|"))
        module = name.strip()
        self_us[module] = int(own)
        cumulative_us[module] = int(total)
    return {
        "total_ms": sum(self_us.values()) / 1000,
        "top": sorted(self_us.items(), key=lambda item: -item[1])[:8],
        "watched": {m: cumulative_us[m] / 1000 for m in WATCHED_IMPORTS if m in cumulative_us},
        "kubernetes": any(m == "kubernetes" or m.startswith("kubernetes.") for m in self_us),
        "modules": len(self_us),
    }


def median_time(argv: list[str], runs: int) -> tuple[float, Run]:
    results = [run_process(argv) for _ in range(runs)]
    return statistics.median(r.seconds for r in results), results[-1]


# -- facts about the machine ---------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with open("/proc/meminfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / MIB:.1f} GiB"
                break
    return {
        "CPU": model,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "OS": f"{platform.system()} {platform.release()} ({platform.machine()})",
    }


def versions(bins: Path) -> dict[str, str]:
    def first_line(*argv: str) -> str:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0]

    found = {
        "Python": platform.python_version() + f" ({sys.executable})",
        "kube-apiserver": first_line(str(bins / "kube-apiserver"), "--version"),
        "etcd": first_line(str(bins / "etcd"), "--version"),
    }
    from importlib import metadata

    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


# -- the report ----------------------------------------------------------------------------


@dataclass
class StepResult:
    step: Step
    cold: Series
    help_seconds: float
    help_rss_mib: float
    imports: dict[str, Any]


@dataclass
class Results:
    machine: dict[str, str]
    versions: dict[str, str]
    runs: int
    sweep_runs: int
    floor_seconds: float
    steps: list[StepResult] = field(default_factory=list)
    skipped: list[Step] = field(default_factory=list)
    # In the images (podman): by tool; `images_note` says why not when empty.
    image: dict[str, Series] = field(default_factory=dict)
    image_refs: dict[str, str] = field(default_factory=dict)
    images_note: str = ""
    sweep: dict[int, Series] = field(default_factory=dict)
    seconds: float = 0.0
    node: Any = None  # hack.bench_node.NodeBench: deploy/ on a real node (issue 13)

    def steps_built(self) -> list[Step]:
        return [result.step for result in self.steps]


def minimum_of(step: Step, n: int) -> int:
    return sum(need.count for need in step.minimum(n))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


def target_rows(results: Results) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    built = {r.step.tool: r for r in results.steps}
    for step in STEPS:
        name = "cleaner on a standard install" if step.tool == "cleaner" else step.tool
        result = built.get(step.tool)
        if result is None:
            rows.append((f"{name}, cold", f"≤ {step.target_seconds} s", "not built yet", "—"))
            continue
        # "The step's own process time": its CPU time (wall time on a shared machine mostly
        # measures the other work; it is shown alongside).
        cpu = result.cold.cpu
        rows.append(
            (
                f"{name}, cold, from the venv: process (CPU) time",
                f"≤ {step.target_seconds} s",
                f"{cpu:.3f} s (wall {result.cold.seconds:.3f} s)",
                verdict(cpu <= step.target_seconds),
            )
        )
    if len(results.steps) == len(STEPS):
        chain = sum(result.cold.seconds for result in results.steps)
        rows.append(
            (
                "whole chain from the venv (sum of the median wall times)",
                f"≤ {CHAIN_TARGET_S} s",
                f"{chain:.3f} s",
                verdict(chain <= CHAIN_TARGET_S),
            )
        )
    for step in STEPS:
        series = results.image.get(step.tool)
        if series is None:
            note = results.images_note or "not measured"
            rows.append((f"{step.tool}, cold, in its image", f"≤ {IMAGE_TARGET_S} s", note, "—"))
            continue
        rows.append(
            (
                f"{step.tool}, cold, in its image: process (CPU) time",
                f"≤ {IMAGE_TARGET_S} s",
                f"{series.cpu:.3f} s (wall {series.seconds:.3f} s)",
                verdict(series.cpu <= IMAGE_TARGET_S),
            )
        )
        rows.append(
            (
                f"peak RSS, {step.tool}, in its image",
                f"≤ {RSS_TARGET_MIB:g} MiB",
                f"{series.rss_mib:.1f} MiB",
                verdict(series.rss_mib <= RSS_TARGET_MIB),
            )
        )
        if step.tool in {r.step.tool for r in results.steps}:
            venv = next(r for r in results.steps if r.step.tool == step.tool).cold.requests
            rows.append(
                (
                    f"API requests, {step.tool}, image = venv",
                    "unchanged",
                    f"{series.requests} / {venv}",
                    verdict(series.requests == venv),
                )
            )
    for result in results.steps:
        rows.append(
            (
                f"`{result.step.script} --help`",
                f"≤ {HELP_TARGET_S} s",
                f"{result.help_seconds:.3f} s",
                verdict(result.help_seconds <= HELP_TARGET_S),
            )
        )
    for n, limit in SWEEP_TARGETS_S.items():
        series = results.sweep.get(n)
        measured = f"{series.seconds:.2f} s" if series else "not measured"
        ok = verdict(series.seconds <= limit) if series else "—"
        rows.append((f"cleaner with {n} ServiceMappings", f"≤ {limit:g} s", measured, ok))
    cleaner = next((s for s in STEPS if s.tool == "cleaner"), None)
    for result in results.steps:
        ratio = result.cold.requests / minimum_of(result.step, 0)
        rows.append(
            (
                f"API requests, {result.step.tool}",
                f"≤ {REQUEST_RATIO_TARGET} x minimum",
                f"{result.cold.requests} / {minimum_of(result.step, 0)} = {ratio:.2f}",
                verdict(ratio <= REQUEST_RATIO_TARGET),
            )
        )
    if cleaner is not None:
        for n, series in results.sweep.items():
            if n == 0:
                continue
            minimum = minimum_of(cleaner, n)
            ratio = series.requests / minimum
            rows.append(
                (
                    f"API requests, cleaner, {n} ServiceMappings",
                    f"≤ {REQUEST_RATIO_TARGET} x minimum",
                    f"{series.requests} / {minimum} = {ratio:.2f}",
                    verdict(ratio <= REQUEST_RATIO_TARGET),
                )
            )
    for result in results.steps:
        rss = result.cold.rss_mib
        rows.append(
            (
                f"peak RSS, {result.step.tool}",
                f"≤ {RSS_TARGET_MIB:g} MiB",
                f"{rss:.1f} MiB",
                verdict(rss <= RSS_TARGET_MIB),
            )
        )
    for n, series in results.sweep.items():
        rows.append(
            (
                f"peak RSS, cleaner, {n} ServiceMappings",
                f"≤ {RSS_TARGET_MIB:g} MiB",
                f"{series.rss_mib:.1f} MiB",
                verdict(series.rss_mib <= RSS_TARGET_MIB),
            )
        )
    return rows


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render(results: Results) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` (hack/bench.py) on {when}, in {results.seconds:.0f} s. "
        "Do not edit by hand: the Profiling notes come from hack/bench_notes.md.",
        "",
        "Every step runs as a whole process, the way the kubelet runs an init container: the "
        "installed console script (`.venv/bin/cp-…`), cold, against a real kube-apiserver and "
        "etcd on 127.0.0.1 (no network latency: on a real cluster every request costs more). "
        f"Wall times are medians of {results.runs} runs; the cluster is reset to a fresh "
        "standard legacy installation before each run, so every run does the real work. API "
        "requests are counted from the apiserver's audit log by the tool's User-Agent "
        "(`cp-migration/<tool>`). Peak RSS is the process's own `ru_maxrss` (wait4), taken "
        "by a small wrapper that spawns it (Linux starts a child's peak at its parent's, so the "
        "bench itself must not be the parent). The "
        "project's packages are byte-compiled first, as pip does when it installs a wheel (its "
        "dependencies were, by pip); the images carry bytecode for everything the steps import "
        "(hack/bytecode.py). In the images, each step runs with podman as the kubelet runs it "
        "(read-only root, UID 1337, host network, an embedded kubeconfig mounted read-only) and "
        "is timed inside the container by a wrapper (wall, CPU and peak RSS of the step's own "
        "process; podman's start is not counted). "
        + (
            "Images: " + ", ".join(f"`{ref}`" for ref in results.image_refs.values()) + "."
            if results.image_refs
            else f"Images: not measured ({results.images_note or 'none'})."
        ),
        "",
        f"**These figures are from a {results.machine['cores']}-core machine** shared with "
        "other work (test suites may have run at the same time), so single runs are noisy; "
        "the spread column shows how much.",
        "",
        "## Machine and versions",
        "",
    ]
    out += table(
        ("what", "value"),
        [(k, v) for k, v in results.machine.items()]
        + [(k, f"`{v}`") for k, v in results.versions.items()],
    )
    if results.skipped:
        out += [
            "",
            "> **Not measured:** "
            + ", ".join(
                f"`{s.script}` (module `{s.module}` is not built yet)" for s in results.skipped
            )
            + ". Rerun `make bench` once it lands.",
        ]
    out += ["", "## Targets (issues 5 and 12)", ""]
    out += table(("what", "target", "measured", "result"), target_rows(results))
    out += ["", "![benchmarks](benchmarks.png)", "", "## Each step on a standard installation", ""]
    out += [
        f"Python's own start-up (`{Path(sys.executable).name} -c pass` in this venv, site and the "
        f"editable-install finder included) is {results.floor_seconds:.3f} s of every figure.",
        "",
    ]
    rows: list[tuple[str, ...]] = []
    for r in results.steps:
        minimum = minimum_of(r.step, 0)
        rows.append(
            (
                r.step.script,
                str(len(r.cold.runs)),
                f"{r.cold.seconds:.3f}",
                r.cold.spread,
                str(r.cold.requests),
                str(minimum),
                f"{r.cold.requests / minimum:.2f}",
                f"{r.cold.cpu:.3f}",
                f"{r.cold.server_cpu:.3f}",
                f"{r.cold.rss_mib:.1f}",
                f"{r.help_seconds:.3f}",
                f"{r.help_rss_mib:.1f}",
                r.cold.exit_codes,
            )
        )
    out += table(
        (
            "step",
            "runs",
            "wall s (median)",
            "min-max s",
            "API requests",
            "minimum",
            "ratio",
            "tool CPU s",
            "server CPU s",
            "peak RSS MiB",
            "`--help` s",
            "`--help` RSS MiB",
            "exit",
        ),
        rows,
    )
    if results.image:
        out += ["", "### In the images (podman, timed inside the container)", ""]
        out += table(
            ("step", "image", "runs", "wall s (median)", "min-max s", "CPU s", "RSS MiB", "API"),
            [
                (
                    step.script,
                    f"`{results.image_refs[step.tool]}`",
                    str(len(series.runs)),
                    f"{series.seconds:.3f}",
                    series.spread,
                    f"{series.cpu:.3f}",
                    f"{series.rss_mib:.1f}",
                    str(series.requests),
                )
                for step in STEPS
                if (series := results.image.get(step.tool)) is not None
            ],
        )
    out += ["", "### Requests each step made (one run)", ""]
    for r in results.steps:
        kinds = ", ".join(
            f"{kind} x{count}" for kind, count in sorted(r.cold.runs[-1].by_kind.items())
        )
        out.append(f"- **{r.step.script}** ({r.cold.runs[-1].requests}): {kinds}")
    out += ["", "### The minimal number of requests, reasoned", ""]
    out += [
        "The fewest requests any implementation that follows the issues' rules needs on the "
        "path benchmarked here (a first run on a fresh standard installation), without knowing "
        "the cluster's state in advance. Reads of named objects are one GET each; a rule that "
        "can be met by one LIST instead of several GETs counts as one.",
        "",
    ]
    for step in STEPS:
        needs = step.minimum(0)
        out.append(f"**{step.script}: {sum(n.count for n in needs)}**")
        out.append("")
        out += [f"- {need.count} x {need.why}" for need in needs]
        out.append("")
    cleaner = next(s for s in STEPS if s.tool == "cleaner")
    out += [
        "With N ServiceMappings the cleaner needs N more PATCHes and ⌈N/500⌉ LIST pages "
        "(at least one), so its minimum is "
        f"{minimum_of(cleaner, 0) - 1} + max(1, ⌈N/500⌉) + N.",
        "",
        "## The cleaner and the number of ServiceMappings",
        "",
    ]
    if results.sweep:
        out += [
            f"Standard installation plus N ServiceMappings (cluster-scoped, none handed over "
            f"yet); median of {results.sweep_runs} runs each.",
            "",
        ]
        rows.clear()
        for n, series in results.sweep.items():
            minimum = minimum_of(cleaner, n)
            rows.append(
                (
                    str(n),
                    str(len(series.runs)),
                    f"{series.seconds:.3f}",
                    series.spread,
                    str(series.requests),
                    str(minimum),
                    f"{series.requests / minimum:.2f}",
                    f"{series.requests / series.seconds:.0f}",
                    f"{series.cpu:.2f}",
                    f"{series.server_cpu:.2f}",
                    f"{series.rss_mib:.1f}",
                    series.exit_codes,
                )
            )
        out += table(
            (
                "N",
                "runs",
                "wall s (median)",
                "min-max s",
                "API requests",
                "minimum",
                "ratio",
                "requests/s",
                "tool CPU s",
                "server CPU s",
                "peak RSS MiB",
                "exit",
            ),
            rows,
        )
    else:
        out.append("> Not measured: `cp-cleaner` is not built yet.")
    node = getattr(results, "node", None)
    if node is not None:
        from hack import bench_node

        out += ["", *bench_node.render(node)]
    out += ["", "## What each step imports", ""]
    out += [
        "One extra, untimed run per step with `PYTHONPROFILEIMPORTTIME=1` (the same real run, "
        "not `--help`). Total is the sum of every module's own import time; the cumulative "
        "column of a package includes what it pulls in.",
        "",
    ]
    rows.clear()
    for r in results.steps:
        imports = r.imports
        watched = ", ".join(f"{m} {ms:.1f}" for m, ms in imports["watched"].items())
        top = ", ".join(f"{m} {us / 1000:.1f}" for m, us in imports["top"][:5])
        rows.append(
            (
                r.step.script,
                str(imports["modules"]),
                f"{imports['total_ms']:.0f}",
                "**yes**" if imports["kubernetes"] else "no",
                watched,
                top,
            )
        )
    out += table(
        (
            "step",
            "modules",
            "import ms",
            "imports `kubernetes`",
            "cumulative ms of watched packages",
            "largest own times (ms)",
        ),
        rows,
    )
    out += ["", NOTES.read_text(encoding="utf-8").strip() if NOTES.exists() else "", ""]
    return "\n".join(out)


def plot(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (cold, sweep_time, sweep_requests) = plt.subplots(1, 3, figsize=(16, 4.8))
    names = [r.step.tool for r in results.steps] + ["--help"]
    values = [r.cold.seconds for r in results.steps] + [
        max((r.help_seconds for r in results.steps), default=0.0)
    ]
    targets = [r.step.target_seconds for r in results.steps] + [HELP_TARGET_S]
    bars = cold.bar(names, values, color="#4c72b0", label="measured (median)")
    cold.scatter(names, targets, color="#c44e52", marker="_", s=900, label="target", zorder=3)
    cold.bar_label(bars, fmt="%.2f s")
    cold.set_ylabel("seconds")
    cold.set_title("Cold start, whole process (standard install)")
    cold.legend(loc="upper left")

    if results.sweep:
        cleaner = next(s for s in STEPS if s.tool == "cleaner")
        ns = list(results.sweep)
        sweep_time.plot(ns, [results.sweep[n].seconds for n in ns], "o-", label="measured")
        sweep_time.scatter(
            list(SWEEP_TARGETS_S),
            list(SWEEP_TARGETS_S.values()),
            color="#c44e52",
            marker="_",
            s=600,
            label="target",
            zorder=3,
        )
        sweep_requests.plot(ns, [results.sweep[n].requests for n in ns], "o-", label="actual")
        sweep_requests.plot(
            ns, [minimum_of(cleaner, n) for n in ns], "--", color="gray", label="minimum"
        )
        sweep_time.legend()
        sweep_requests.legend()
    else:
        for axes in (sweep_time, sweep_requests):
            axes.text(0.5, 0.5, "cp-cleaner not built yet", ha="center", transform=axes.transAxes)
    sweep_time.set_title("cp-cleaner: wall time vs ServiceMappings")
    sweep_time.set_xlabel("ServiceMappings")
    sweep_time.set_ylabel("seconds")
    sweep_requests.set_title("cp-cleaner: API requests vs ServiceMappings")
    sweep_requests.set_xlabel("ServiceMappings")
    sweep_requests.set_ylabel("requests")
    figure.suptitle(
        f"cp-migration on {results.machine['cores']} cores, {results.machine['CPU']}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# -- main ----------------------------------------------------------------------------------


@contextlib.contextmanager
def control_plane() -> Iterator[ControlPlane]:
    folder = Path(tempfile.mkdtemp(prefix="cp-bench-controlplane-"))
    plane = ControlPlane(folder)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="cold runs per step (median)")
    parser.add_argument("--help-runs", type=int, default=10, help="runs of --help (median)")
    parser.add_argument("--sizes", default="0,100,1000,5000", help="ServiceMapping counts")
    parser.add_argument("--sweep-runs", type=int, default=3, help="runs per ServiceMapping count")
    parser.add_argument("--out", type=Path, default=DOCS / "benchmarks.md")
    parser.add_argument(
        "--images",
        choices=("auto", "no"),
        default="auto",
        help="auto: also measure each step in its image when podman has it (make images)",
    )
    parser.add_argument(
        "--no-node", action="store_true", help="skip deploy/ on a real node (hack/bench_node.py)"
    )
    parser.add_argument(
        "--rerender",
        type=Path,
        metavar="PICKLE",
        help="only write the doc and plot again from the results a previous run saved",
    )
    args = parser.parse_args(argv)
    if args.rerender:
        with open(args.rerender, "rb") as handle:
            write_report(pickle.load(handle), args.out)
        return 0
    started = time.monotonic()
    compile_bytecode()
    bin_dir = Path(sys.executable).parent
    bins = binaries_dir()
    floor, _ = median_time([sys.executable, "-c", "pass"], args.help_runs)
    results = Results(
        machine=machine(),
        versions=versions(bins),
        runs=args.runs,
        sweep_runs=args.sweep_runs,
        floor_seconds=floor,
    )
    with control_plane() as plane:
        bench = Bench(plane, bin_dir)
        for step in STEPS:
            if not step.built or not (bin_dir / step.script).exists():
                print(f"== {step.script}: not built yet, skipped")
                results.skipped.append(step)
                continue
            print(f"== {step.script}: {args.runs} cold runs")
            runs = []
            for index in range(args.runs):
                run = bench.measure(step)
                print(
                    f"   run {index + 1}: {run.seconds:.3f} s, {run.requests} requests, "
                    f"{run.max_rss_kib / 1024:.1f} MiB, exit {run.exit_code}"
                )
                runs.append(run)
            help_seconds, help_run = median_time(bench.argv(step, "--help"), args.help_runs)
            print(f"   --help: {help_seconds:.3f} s")
            results.steps.append(
                StepResult(
                    step=step,
                    cold=Series(runs),
                    help_seconds=help_seconds,
                    help_rss_mib=help_run.max_rss_kib / 1024,
                    imports=bench.import_profile(step),
                )
            )
        if args.images == "auto":
            measure_images(bench, results, args.runs)
        else:
            results.images_note = "--images no"
        cleaner = STEPS[-1]
        if cleaner in results.steps_built():
            for n in (int(size) for size in args.sizes.split(",") if size.strip()):
                print(f"== {cleaner.script} with {n} ServiceMappings: {args.sweep_runs} runs")
                runs = []
                for index in range(args.sweep_runs):
                    run = bench.measure(cleaner, mappings=n)
                    print(
                        f"   run {index + 1}: {run.seconds:.3f} s, {run.requests} requests, "
                        f"{run.max_rss_kib / 1024:.1f} MiB, exit {run.exit_code}"
                    )
                    runs.append(run)
                results.sweep[n] = Series(runs)
    if not args.no_node:
        from hack import bench_node

        print(f"== deploy/ on a real node: {args.runs} runs")
        results.node = bench_node.run(args.runs)
        if results.node.skipped:
            print(f"   not measured: {results.node.skipped}")
    results.seconds = time.monotonic() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "wb") as handle:
        pickle.dump(results, handle)
    write_report(results, args.out)
    return 0


def write_report(results: Results, out: Path) -> None:
    out.write_text(render(results), encoding="utf-8")
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    print(f"results saved for --rerender in {RESULTS}")


def image_refs() -> dict[str, str]:
    """The references `make images` gives the step images (hack/images.sh names)."""
    names = subprocess.run(
        ["bash", "hack/images.sh", "names"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return dict(zip((step.tool for step in STEPS), names, strict=True))


def measure_images(bench: Bench, results: Results, runs: int) -> None:
    import shutil

    from tests.support.images import embedded_kubeconfig

    if shutil.which("podman") is None:
        results.images_note = "podman is not installed"
        return
    refs = image_refs()
    missing = [
        ref
        for ref in refs.values()
        if subprocess.run(["podman", "image", "exists", ref], check=False).returncode != 0
    ]
    if missing:
        results.images_note = "not built: " + ", ".join(missing) + " (make images)"
        print(f"== images: {results.images_note}")
        return
    results.image_refs = refs
    kubeconfig = embedded_kubeconfig(bench.cluster, Path(tempfile.mkdtemp(prefix="cp-bench-")))
    for step in STEPS:
        print(f"== {step.script} in {refs[step.tool]}: {runs} cold runs")
        measured = []
        for index in range(runs):
            run = bench.measure_in_image(step, refs[step.tool], kubeconfig)
            print(
                f"   run {index + 1}: {run.seconds:.3f} s, CPU {run.cpu_seconds:.3f} s, "
                f"{run.requests} requests, {run.max_rss_kib / 1024:.1f} MiB, exit {run.exit_code}"
            )
            measured.append(run)
        results.image[step.tool] = Series(measured)


def compile_bytecode() -> None:
    """Byte-compile the product packages first, as pip does when it installs the wheel into an
    image: otherwise (PYTHONDONTWRITEBYTECODE, a fresh clone) every run would compile them."""
    packages = [str(REPO / name) for name in ("common", "migrator", "backup", "cleaner")]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *packages],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


if __name__ == "__main__":
    sys.exit(main())
