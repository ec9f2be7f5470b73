"""Transient faults on reads and writes: the chain still succeeds, no side effect happens
twice, and the time stays bounded. A persistent fault ends in exit 1 naming the request."""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from hack.devenv import legacy
from hack.devenv.cluster import Cluster
from tests.support import chain, reports
from tests.support.faultproxy import (
    FORWARD_RESET,
    RESET,
    Action,
    FaultProxy,
    Record,
    Rule,
    delay,
    respond,
)

CR = (
    "/apis/connectivityproxy.sap.com/v1/namespaces/kyma-system/connectivityproxies"
    "/connectivity-proxy"
)
LEGACY_CONFIG = "/api/v1/namespaces/kyma-system/configmaps/connectivity-proxy"
BACKUP_CONFIGMAPS = "/api/v1/namespaces/connectivity-proxy-backup/configmaps"
STATEFULSET = "/apis/apps/v1/namespaces/kyma-system/statefulsets/connectivity-proxy"
EVENTS = "/api/v1/namespaces/kyma-system/events"

# The client's per-request timeout in these tests is 1 s (chain.FAST_RETRIES).
SLOWER_THAN_THE_CLIENT_TIMEOUT = 2.5
# A chain run through the proxy takes a few seconds; each fault adds at most about one
# request timeout plus a short backoff. Generous for a loaded CI machine, yet far below a hang.
BOUND_SECONDS = 45.0


@dataclass(frozen=True)
class Target:
    name: str
    method: str
    path: str
    dry_run: bool = False
    occurrence: int = 1


TARGETS = (
    Target("read: cp-migrator GET CR", "GET", CR),
    # The backup lists its namespace twice: to observe it, then to read its copies back.
    Target("read: cp-backup reads its copies back", "GET", BACKUP_CONFIGMAPS, occurrence=2),
    Target("write: cp-migrator PATCH CR", "PATCH", CR),
    Target("write: cp-backup POST copy", "POST", BACKUP_CONFIGMAPS),
    # Every step's run ends with its fleet record, one more PATCH of the CR (README "Fleet
    # view"): the migrator's write is the 1st, its record the 2nd, the backup's mark the 3rd.
    Target("write: cp-backup PATCH CR (mark)", "PATCH", CR, occurrence=3),
    Target("write: cp-cleaner DELETE legacy ConfigMap", "DELETE", LEGACY_CONFIG),
    Target("write: cp-cleaner PATCH CR (mark)", "PATCH", CR, occurrence=5),
)
FAULTS: dict[str, Action] = {
    "500": respond(500),
    "503": respond(503),
    "429 Retry-After 1": respond(429, retry_after=1),
    "connection reset": RESET,
    "reset after the apiserver acted": FORWARD_RESET,
    "answer slower than the client timeout": delay(SLOWER_THAN_THE_CLIENT_TIMEOUT),
}

TIMINGS: list[list[str]] = []
_reference: dict[str, Any] = {}


def side_effects(records: list[Record]) -> Counter[tuple[str, str]]:
    """Writes the apiserver accepted, by (method, path); events separately."""
    return Counter(
        (r.request.method, r.request.path)
        for r in records
        if r.took_effect and r.request.path != EVENTS
    )


def reference(cluster: Cluster, proxy: FaultProxy) -> dict[str, Any]:
    """An uninterrupted run through the proxy: its final state and side effects (once)."""
    if not _reference:
        legacy.fresh_install(cluster)
        proxy.reset()
        result = chain.run_chain(proxy.kubeconfig)
        assert result.succeeded, result.output()
        _reference["state"] = chain.snapshot(cluster)
        _reference["effects"] = side_effects(proxy.snapshot())
        _reference["events"] = sum(1 for r in proxy.effective_writes() if r.request.path == EVENTS)
    return _reference


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_a_transient_fault_is_survived_without_repeating_a_side_effect(
    cluster: Cluster, fault_proxy: FaultProxy, target: Target, fault: str
) -> None:
    expected = reference(cluster, fault_proxy)
    legacy.fresh_install(cluster)
    fault_proxy.reset()
    rule = fault_proxy.add(
        Rule(
            FAULTS[fault],
            target.method,
            _escaped(target.path),
            target.dry_run,
            target.occurrence,
        )
    )
    started = time.monotonic()
    result = chain.run_chain(fault_proxy.kubeconfig)
    elapsed = time.monotonic() - started
    TIMINGS.append([target.name, fault, f"{elapsed:.1f}s", result.stopped_at])

    assert rule.fired == 1, f"the fault was never injected: {target}"
    assert result.succeeded, result.output()
    assert elapsed < BOUND_SECONDS
    effects = side_effects(fault_proxy.snapshot())
    repeated = {k: n for k, n in effects.items() if n > expected["effects"].get(k, 0)}
    assert not repeated, f"side effects repeated: {repeated}"
    assert effects == expected["effects"], "a side effect is missing"
    events = sum(1 for r in fault_proxy.effective_writes() if r.request.path == EVENTS)
    # Events are best effort: one lost to a fault is fine, a doubled one is not.
    assert events <= expected["events"]
    assert not chain.differences(expected["state"], chain.snapshot(cluster))


def _escaped(path: str) -> str:
    return re.escape(path)


@pytest.mark.parametrize(
    ("name", "method", "path", "action"),
    [
        ("503 on every read of the CR", "GET", CR, respond(503)),
        ("429 on every read of the CR", "GET", CR, respond(429, retry_after=1)),
        ("every read of the CR hangs", "GET", CR, delay(30)),
        ("every write of the CR is reset", "PATCH", CR, RESET),
        ("500 on every delete of the StatefulSet", "DELETE", STATEFULSET, respond(500)),
    ],
)
def test_a_persistent_fault_ends_in_exit_1_naming_the_request(
    cluster: Cluster, fault_proxy: FaultProxy, name: str, method: str, path: str, action: Action
) -> None:
    legacy.fresh_install(cluster)
    fault_proxy.add(Rule(action, method, _escaped(path), times=None))
    budget = 3.0
    started = time.monotonic()
    result = chain.run_chain(fault_proxy.kubeconfig, env={"CP_RETRY_SECONDS": str(budget)})
    elapsed = time.monotonic() - started
    TIMINGS.append([f"persistent: {name}", "", f"{elapsed:.1f}s", result.stopped_at])

    failed = result.results[-1][1]
    assert failed.exit_code == 1, result.output()
    assert f"{method} {path}" in failed.output, failed.output
    # Bounded by the retry budget plus one request timeout per step, not by the fault.
    assert elapsed < 30


def test_report_fault_timings() -> None:
    """Runs last in this module: the time each fault cost, for the summary."""
    if TIMINGS:
        reports.add(
            "transient and persistent faults: time per chain run",
            reports.table(["target", "fault", "chain took", "outcome"], TIMINGS),
        )
