"""Crash-point sweep: the full chain (migrate -> backup -> clean) is interrupted at every
request that can change state, then run again; the result must equal an uninterrupted run,
and the user configuration must be recoverable at every interruption point.

Two variants per point, through the fault proxy in front of the real apiserver:
- kill: the request reaches the apiserver, then the tool's process is SIGKILLed before it
  sees the answer (the pod dies right after sending);
- fail: the request is answered 500 every time it is sent in that run (it never takes effect).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from common import kyma
from common.backups import digest_problem
from hack.devenv import legacy
from hack.devenv.cluster import Cluster
from tests.support import chain, reports, states
from tests.support.faultproxy import KILL, FaultProxy, Rule, occurrences, respond

# A failing request exhausts its retries quickly here; the point is what the tool does after.
FAILING_RUN_ENV = {"CP_RETRY_SECONDS": "0.5", "CP_REQUEST_TIMEOUT": "5"}


@dataclass
class Outcome:
    point: int
    step: str
    request: str
    variant: str
    interrupted: str
    recoverable_from: str
    rerun: str
    final_state: str

    @property
    def ok(self) -> bool:
        return (
            self.recoverable_from != "LOST"
            and self.rerun == "completed"
            and self.final_state == "same"
        )

    def row(self) -> list[str]:
        return [
            str(self.point),
            self.step,
            self.request,
            self.variant,
            self.interrupted,
            self.recoverable_from,
            self.rerun,
            self.final_state,
        ]


def user_configuration(cluster: Cluster) -> dict[str, dict[str, Any]]:
    found = {}
    for name in kyma.SOURCES:
        configmap = cluster.configmap("kyma-system", name)
        assert configmap is not None
        found[name] = {
            "data": configmap.get("data") or {},
            "binaryData": configmap.get("binaryData") or {},
        }
    return found


def recoverable_from(cluster: Cluster, originals: dict[str, dict[str, Any]]) -> str:
    """Where each user-configuration ConfigMap can be had back from, or LOST."""
    places = []
    for name, original in originals.items():
        source = cluster.configmap("kyma-system", name)
        if source is not None and _content(source) == original:
            places.append("source")
            continue
        backup = cluster.configmap(kyma.BACKUP_NAMESPACE, name)
        if backup is not None and digest_problem(backup) is None and _content(backup) == original:
            places.append("backup")
            continue
        return "LOST"
    return "+".join(sorted(set(places)))


def _content(configmap: dict[str, Any]) -> dict[str, Any]:
    return {"data": configmap.get("data") or {}, "binaryData": configmap.get("binaryData") or {}}


def sweep(
    cluster: Cluster,
    fault_proxy: FaultProxy,
    install: Callable[[], None],
    recoverable: Callable[[], str],
    title: str,
) -> list[Outcome]:
    """Interrupt the chain from `install`'s state at every write it sends (kill and fail), then
    run it again: the result must equal an uninterrupted run's, and `recoverable()` (where the
    configuration can be had back from) must never say LOST."""
    started = time.monotonic()
    install()
    reference = chain.run_chain(fault_proxy.kubeconfig)
    assert reference.succeeded, reference.output()
    expected = chain.snapshot(cluster)
    points = occurrences(fault_proxy.writes())
    assert points, "the chain sent no writes"

    outcomes: list[Outcome] = []
    for index, (key, occurrence, record) in enumerate(points, start=1):
        step = chain.step_of(record.request.user_agent)
        for variant in ("kill", "fail"):
            install()
            fault_proxy.reset()
            if variant == "kill":
                rule = fault_proxy.add(Rule.exactly(key, occurrence, KILL))
                interrupted = chain.run_chain(
                    fault_proxy.kubeconfig, as_process=step, started=fault_proxy.victim
                )
            else:
                rule = fault_proxy.add(Rule.exactly(key, occurrence, respond(500), times=None))
                interrupted = chain.run_chain(fault_proxy.kubeconfig, env=FAILING_RUN_ENV)
            # Measured at the interruption point, before anything repairs it.
            found = recoverable()
            rerun = chain.run_chain(cluster.kubeconfig)
            problems = chain.differences(expected, chain.snapshot(cluster))
            outcome = Outcome(
                point=index,
                step=step.name,
                request=record.request.describe() + (f" #{occurrence}" if occurrence > 1 else ""),
                variant=variant,
                interrupted=interrupted.stopped_at if rule.fired else "NOT REACHED",
                recoverable_from=found,
                rerun=rerun.stopped_at,
                final_state="same" if not problems else f"{len(problems)} difference(s)",
            )
            outcomes.append(outcome)
            assert rule.fired, f"point {index} ({variant}) was never reached"
            assert found != "LOST", f"{outcome}\n{interrupted.output()}"
            assert rerun.succeeded, f"{outcome}\n{rerun.output()}"
            assert not problems, f"{outcome}\n" + "\n".join(problems)

    reports.add(
        f"{title}: {len(points)} points x 2 variants in {time.monotonic() - started:.0f}s",
        reports.table(
            ["#", "step", "request", "variant", "interrupted run", "config in", "rerun", "final"],
            [o.row() for o in outcomes],
        ),
    )
    assert all(o.ok for o in outcomes)
    return outcomes


def test_the_chain_survives_a_crash_or_failure_at_every_write(
    cluster: Cluster, fault_proxy: FaultProxy
) -> None:
    assert [step.name for step in chain.CHAIN] == ["cp-migrator", "cp-backup", "cp-cleaner"][
        : len(chain.CHAIN)
    ]
    legacy.fresh_install(cluster)
    originals = user_configuration(cluster)
    sweep(
        cluster,
        fault_proxy,
        lambda: legacy.fresh_install(cluster),
        lambda: recoverable_from(cluster, originals),
        "crash-point sweep",
    )


# Starting states of tests/support/states.py whose chain writes what the standard one does not:
# a CR created again and migrated from the backups; copies by the original backup.sh kept
# under another name before cp-backup writes its own; leftover ConfigMaps, one of them taken
# from its backup.
OTHER_STARTS = (
    "ours:MBC|recreated|absent|none|as-left|present",
    "go:M sh:B|kept|reconciler|both|as-left|present",
    "ours:MB|recreated|absent|info|as-left|present",
)


@pytest.mark.parametrize("state_id", OTHER_STARTS)
def test_the_chain_survives_a_crash_or_failure_at_every_write_from_other_states(
    cluster: Cluster, fault_proxy: FaultProxy, state_id: str
) -> None:
    state = states.State(*state_id.split("|"))
    env = states.ClusterEnv(cluster)

    def install() -> None:
        logging.disable(logging.CRITICAL)  # building the state runs the tools in-process
        try:
            env.reset(state)
            states.build(env, state)
        finally:
            logging.disable(logging.NOTSET)

    def recoverable() -> str:
        found = states.where_config(env)
        return "+".join(sorted(found.places)) if found.safe() else "LOST"

    sweep(cluster, fault_proxy, install, recoverable, f"crash-point sweep from {state_id}")
