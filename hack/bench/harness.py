"""The harness: a control plane of its own (audit log at Metadata level, blocking mode), a
fresh standard legacy installation before each run, and each step measured the way a user or
the kubelet runs it: the installed console script, cold, one process per run, or the step in
its image (podman, as the kubelet runs it). API requests are counted from the audit log by
the tool's User-Agent (`cp-migration/<tool>`)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

from cleaner import plan as planning
from common import kyma
from common.cluster.client import Kube, resource_path
from common.cluster.kubeconfig import resolve
from common.errors import ApiError
from common.runner import user_agent
from hack.bench.results import Results, Run, Series
from hack.bench.targets import STEPS, Step
from hack.bytecode import TOOL_PACKAGES
from hack.devenv import legacy
from hack.devenv.cluster import FIXTURES, Cluster
from hack.devenv.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
BENCH_AGENT = "cp-migration-bench"
SENTINEL_AGENT = "cp-migration-bench/sentinel"
# The ServiceMappings the sweep creates, in the version the fixture's CRD serves.
SM_VERSION = "v1"
SM_COLLECTION = resource_path(kyma.GROUP, SM_VERSION, planning.MAPPING_PLURAL)
MIB = 1024 * 1024
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


# -- one process ---------------------------------------------------------------------------


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


def median_time(argv: list[str], runs: int) -> tuple[float, Run]:
    results = [run_process(argv) for _ in range(runs)]
    return statistics.median(r.seconds for r in results), results[-1]


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


def compile_bytecode() -> None:
    """Byte-compile the product packages first, as pip does when it installs the wheel into an
    image: otherwise (PYTHONDONTWRITEBYTECODE, a fresh clone) every run would compile them."""
    packages = [str(REPO / name) for name in TOOL_PACKAGES]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *packages],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


# -- requests, from the audit log ----------------------------------------------------------


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
        agent = user_agent(tool)
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


# -- cluster state and measurements --------------------------------------------------------


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
        path = resource_path("", "v1", "namespaces", name=kyma.BACKUP_NAMESPACE)
        if self.kube.get(path) is not None:
            self.kube.delete(path)
            self.cluster.finalize_namespace(kyma.BACKUP_NAMESPACE)

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
                    "apiVersion": f"{kyma.GROUP}/{SM_VERSION}",
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
        from hack.devenv.images import pod_like_args

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
    from hack.devenv.images import embedded_kubeconfig

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
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found
