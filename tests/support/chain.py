"""The full chain of init containers (migrate -> backup -> clean) for reliability tests: a
standard legacy installation, running the steps in-process or as processes against any
kubeconfig (the fault proxy's or the control plane's), and a comparable snapshot of the
cluster's final state."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib
import json
import multiprocessing
import multiprocessing.context
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from common.cluster.client import resource_path
from common.errors import ApiError
from common.kyma import RECORD_ANNOTATIONS
from hack.devenv import legacy
from hack.devenv.cluster import (
    CLUSTER_SCOPED,
    NAMESPACED,
    OWNED_PREFIXES,
    TEST_NAMESPACES,
    Cluster,
    ToolResult,
)
from hack.devenv.cluster import AuditWindow as BaseAuditWindow


@dataclass(frozen=True)
class Step:
    name: str
    entry: str  # module:click command, as in pyproject's console scripts

    def command(self) -> Any:
        module_name, _, attribute = self.entry.partition(":")
        return getattr(importlib.import_module(module_name), attribute)


MIGRATOR = Step("cp-migrator", "migrator.cli:main")
BACKUP = Step("cp-backup", "backup.cli:backup_main")
RESTORE = Step("cp-restore", "backup.cli:restore_main")
CLEANER = Step("cp-cleaner", "cleaner.cli:main")
STATUS = Step("cp-status", "cleaner.status_cli:main")


def _built(step: Step) -> bool:
    try:
        step.command()
    except (ImportError, AttributeError):
        return False
    return True


# The init containers in their order.
CHAIN: tuple[Step, ...] = tuple(s for s in (MIGRATOR, BACKUP, CLEANER) if _built(s))

# Small budgets so that faults cost seconds, not the production defaults' minutes.
FAST_RETRIES = {"CP_RETRY_SECONDS": "8", "CP_REQUEST_TIMEOUT": "1"}

CP_CRD = "connectivityproxies.connectivityproxy.sap.com"


# -- running -----------------------------------------------------------------------------------


def run_in_process(
    step: Step, kubeconfig: Path, *args: str, env: dict[str, str] | None = None
) -> ToolResult:
    """Fast: the click command in this process (never from two threads at once)."""
    result = CliRunner().invoke(
        step.command(),
        ["--kubeconfig", str(kubeconfig), "--log-format", "text", *args],
        env={**FAST_RETRIES, **(env or {})},
        catch_exceptions=False,
    )
    return ToolResult(result.exit_code, result.stdout, result.stderr)


def run_process(
    step: Step,
    kubeconfig: Path,
    *args: str,
    env: dict[str, str] | None = None,
    started: Callable[[int], contextlib.AbstractContextManager[None]] | None = None,
    timeout: float = 120,
) -> ToolResult:
    """As an init container runs it: its own process, which can be killed. `started(pid)` is
    active while it runs (for example to let the fault proxy kill exactly this process).

    The process is forked from a forkserver that has the tools imported already: a real,
    separate process without paying Python's start-up and imports each time."""
    with tempfile.TemporaryDirectory(prefix="cp-step-") as folder:
        out, err = Path(folder) / "stdout", Path(folder) / "stderr"
        process = _forkserver().Process(
            target=_run_step,
            args=(
                step.entry,
                step.name,
                ["--kubeconfig", str(kubeconfig), *args],
                {**FAST_RETRIES, **(env or {})},
                str(out),
                str(err),
            ),
        )
        process.start()
        assert process.pid is not None
        with started(process.pid) if started else contextlib.nullcontext():
            process.join(timeout)
            if process.exitcode is None:
                process.kill()
                process.join()
                raise TimeoutError(f"{step.name} did not finish within {timeout}s")
        code = process.exitcode
        return ToolResult(code, out.read_text(), err.read_text())


_FORKSERVER: multiprocessing.context.ForkServerContext | None = None


def _forkserver() -> multiprocessing.context.ForkServerContext:
    global _FORKSERVER
    if _FORKSERVER is None:
        context = multiprocessing.get_context("forkserver")
        # Everything a step imports, so that each forked step starts warm (the kubernetes
        # package alone is ~0.15 s a step otherwise).
        context.set_forkserver_preload(
            ["click", "yaml", "urllib3", "kubernetes.client", "kubernetes.config"]
            + ["common.cluster.client", "migrator.core", "backup.core", "backup.restore"]
            + ["cleaner.core", "cleaner.status.gather", "cleaner.status.render"]
            + ["tests.support.chain"]
            + [step.entry.partition(":")[0] for step in (*CHAIN, RESTORE, STATUS)]
        )
        _FORKSERVER = context
    return _FORKSERVER


def _run_step(
    entry: str, name: str, argv: list[str], env: dict[str, str], out: str, err: str
) -> None:
    """In the forked process: the console script's click command, its output in files."""
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - lives with us
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - lives with us
    module_name, _, attribute = entry.partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    try:
        command.main(args=argv, prog_name=name, standalone_mode=True)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


@dataclass
class ChainResult:
    results: list[tuple[Step, ToolResult]]

    @property
    def succeeded(self) -> bool:
        return len(self.results) == len(CHAIN) and all(r.exit_code == 0 for _, r in self.results)

    @property
    def stopped_at(self) -> str:
        for step, result in self.results:
            if result.exit_code != 0:
                return f"{step.name} exit {result.exit_code}"
        return "completed"

    def output(self) -> str:
        return "\n".join(
            f"--- {step.name} exit {result.exit_code}\n{result.output}"
            for step, result in self.results
        )


def run_chain(
    kubeconfig: Path,
    *,
    as_process: Step | None = None,
    processes: bool = False,
    env: dict[str, str] | None = None,
    started: Callable[[int], contextlib.AbstractContextManager[None]] | None = None,
) -> ChainResult:
    """Each step in order, stopping at the first that fails (as the kubelet would, before it
    restarts the pod). Steps run in-process (fast) except `as_process`, which runs as its own
    process so that it can be killed (`started(pid)` is active while it runs), or every step
    when `processes` (needed to run chains from several threads at once)."""
    results: list[tuple[Step, ToolResult]] = []
    for step in CHAIN:
        if processes or step == as_process:
            result = run_process(step, kubeconfig, env=env, started=started)
        else:
            result = run_in_process(step, kubeconfig, env=env)
        results.append((step, result))
        if result.exit_code != 0:
            break
    return ChainResult(results)


def step_of(user_agent: str) -> Step:
    """The step that sent a request, from its User-Agent `cp-migration/<tool>`."""
    tool = user_agent.rpartition("/")[2]
    for step in (*CHAIN, RESTORE, STATUS):
        if step.name == f"cp-{tool}":
            return step
    raise LookupError(f"no step sends User-Agent {user_agent!r}")


# -- final state ---------------------------------------------------------------------------------

# Set by the apiserver or a clock, never by the tools' decisions.
_VOLATILE_METADATA = (
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
)
_VOLATILE_ANNOTATIONS = (
    "backup.connectivityproxy.sap.com/time",
    "backup.connectivityproxy.sap.com/preserved-time",
    "backup.connectivityproxy.sap.com/preserved-uid",
    "backup.connectivityproxy.sap.com/source-uid",
    "backup.connectivityproxy.sap.com/source-resource-version",
    # The record's time, and its message, which counts what this run did (a rerun after a
    # crash says "nothing to do" where an uninterrupted run said what it changed).
    "connectivityproxy.sap.com/migration-since",
    "connectivityproxy.sap.com/migration-message",
)


def normalized(obj: dict[str, Any]) -> dict[str, Any]:
    found = copy.deepcopy(obj)
    meta = found.setdefault("metadata", {})
    for key in _VOLATILE_METADATA:
        meta.pop(key, None)
    annotations = meta.get("annotations") or {}
    for key in _VOLATILE_ANNOTATIONS:
        annotations.pop(key, None)
    spec = found.get("spec")
    if isinstance(spec, dict):
        # A Service's cluster IP is allocated anew each time the installation is applied.
        for key in ("clusterIP", "clusterIPs"):
            spec.pop(key, None)
    return found


def snapshot(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """Every object the chain may touch, normalized, keyed by its path. Events are left out."""
    found: dict[str, dict[str, Any]] = {}
    namespaced = [k for k in NAMESPACED if k[2] != "events"] + list(cluster._extra_namespaced())
    for group, version, plural in namespaced:
        for namespace in TEST_NAMESPACES:
            collection = resource_path(group, version, plural, namespace)
            for item in _list(cluster, collection):
                if item["metadata"]["name"] == "kube-root-ca.crt":
                    continue
                found[f"{collection}/{item['metadata']['name']}"] = normalized(item)
    cluster_scoped = [*CLUSTER_SCOPED, legacy.SERVICE_MAPPINGS]
    for group, version, plural in cluster_scoped:
        collection = resource_path(group, version, plural)
        for item in _list(cluster, collection):
            name = item["metadata"]["name"]
            if plural != "servicemappings" and not name.startswith(OWNED_PREFIXES):
                continue
            found[f"{collection}/{name}"] = normalized(item)
    for namespace in TEST_NAMESPACES:
        path = resource_path("", "v1", "namespaces", name=namespace)
        ns = cluster.kube.get(path)
        if ns is not None:
            terminating = bool(ns["metadata"].get("deletionTimestamp"))
            found[path] = {"exists": True, "terminating": terminating}
    for crd in (legacy.SERVICE_MAPPINGS_CRD, CP_CRD):
        path = resource_path("apiextensions.k8s.io", "v1", "customresourcedefinitions", name=crd)
        obj = cluster.kube.get(path)
        if obj is not None:
            # The cleaner hands the ServiceMapping CRD over through its metadata only.
            meta = obj["metadata"]
            found[path] = {
                "labels": meta.get("labels") or {},
                "annotations": {
                    k: v
                    for k, v in (meta.get("annotations") or {}).items()
                    if k != "kubectl.kubernetes.io/last-applied-configuration"
                },
            }
    return found


def _list(cluster: Cluster, collection: str) -> list[dict[str, Any]]:
    try:
        return list(cluster.kube.list(collection))
    except ApiError as err:
        if err.status == 404:
            return []
        raise


def differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Readable differences between two snapshots (empty when equal)."""
    problems = []
    for path in sorted(set(expected) | set(actual)):
        if path not in actual:
            problems.append(f"missing: {path}")
        elif path not in expected:
            problems.append(f"unexpected: {path}")
        elif expected[path] != actual[path]:
            problems.append(
                f"differs: {path}\n  expected {json.dumps(expected[path], sort_keys=True)}"
                f"\n  actual   {json.dumps(actual[path], sort_keys=True)}"
            )
    return problems


def cr_version(cr: dict[str, Any]) -> str:
    """The CR as a version that ignores the record (README "Fleet view"): every run that
    reaches the CR may leave its record; "nothing changed" means nothing else did."""
    found = copy.deepcopy(cr)
    meta = found.get("metadata") or {}
    for key in ("resourceVersion", "managedFields"):
        meta.pop(key, None)
    annotations = meta.get("annotations") or {}
    for key in RECORD_ANNOTATIONS:
        annotations.pop(key, None)
    if not annotations:
        meta.pop("annotations", None)
    return hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()[:16]


def resource_versions(cluster: Cluster) -> dict[str, str]:
    """Every object's resourceVersion (Events aside; the CR's content but its record): equal
    before and after a run proves that the run wrote nothing (but its record)."""
    versions = {}
    for group, version, plural in [k for k in NAMESPACED if k[2] != "events"] + list(
        cluster._extra_namespaced()
    ):
        for namespace in TEST_NAMESPACES:
            for item in _list(cluster, resource_path(group, version, plural, namespace)):
                key = f"{plural}/{namespace}/{item['metadata']['name']}"
                versions[key] = (
                    cr_version(item)
                    if plural == "connectivityproxies"
                    else item["metadata"]["resourceVersion"]
                )
    for group, version, plural in [*CLUSTER_SCOPED, legacy.SERVICE_MAPPINGS]:
        for item in _list(cluster, resource_path(group, version, plural)):
            versions[f"{plural}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
    for namespace in TEST_NAMESPACES:
        ns = cluster.kube.get(resource_path("", "v1", "namespaces", name=namespace))
        versions[f"namespaces/{namespace}"] = ns["metadata"]["resourceVersion"] if ns else "-"
    return versions


# -- the audit log ---------------------------------------------------------------------------


def but_the_record(writes: list[str]) -> list[str]:
    """The writes of a run less its fleet record's (README "Fleet view"): one merge patch of the
    CR and its Warning Event, which every run that reaches the CR may leave, a refusal too.
    That the CR patch changed nothing but the record is proven by resource_versions."""

    def of_events(write: str) -> bool:  # ".../events" (a create) or ".../events/NAME"
        segments = write.partition(" ")[2].partition("?")[0].split("/")
        return "events" in segments[-2:]

    cr_patches = [w for w in writes if w.startswith("patch ") and "/connectivityproxies/" in w]
    others = [w for w in writes if w not in cr_patches and not of_events(w)]
    return others + cr_patches[1:]


AUDIT_MUTATING_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


class AuditWindow(BaseAuditWindow):
    """The apiserver's audit events since the window opened, and the tools' writes among them."""

    def mutations(self, user_agent_prefix: str = "cp-migration/") -> list[str]:
        """Writes the tools sent (dry runs excluded: they change nothing)."""
        found = []
        for event in self.events():
            if event.get("stage") != "ResponseComplete":
                continue
            if not str(event.get("userAgent", "")).startswith(user_agent_prefix):
                continue
            if event.get("verb") not in AUDIT_MUTATING_VERBS:
                continue
            uri = str(event.get("requestURI", ""))
            # Dry runs and access reviews (SelfSubjectRulesReview) change nothing.
            if "dryRun=All" in uri or uri.startswith("/apis/authorization.k8s.io/"):
                continue
            found.append(f"{event['verb']} {uri}")
        return found
