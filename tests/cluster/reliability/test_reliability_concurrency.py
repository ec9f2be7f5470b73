"""Concurrency: two pods' init containers at once (a rolling update), and a person or the
operator changing the CR while a step writes it. Nothing may be lost on either side."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pytest

from common import kyma
from common.cr import CR_PATH
from hack.devenv import legacy
from hack.devenv.cluster import Cluster, ToolResult
from tests.support import chain, reports
from tests.support.chain import ChainResult
from tests.support.faultproxy import FaultProxy, Rule, hook

CR = CR_PATH
ROUNDS = 3
MAX_RESTARTS = 3


def run_pod(kubeconfig: Any, into: list[ChainResult]) -> None:
    """One pod: the chain as processes; a failed step restarts the pod, as the kubelet does."""
    for _ in range(MAX_RESTARTS + 1):
        result = chain.run_chain(kubeconfig, processes=True)
        into.append(result)
        if result.succeeded:
            return


def test_two_chains_at_once_end_in_the_same_state(cluster: Cluster) -> None:
    legacy.fresh_install(cluster)
    reference = chain.run_chain(cluster.kubeconfig)
    assert reference.succeeded, reference.output()
    expected = chain.snapshot(cluster)

    rows = []
    for round_number in range(1, ROUNDS + 1):
        legacy.fresh_install(cluster)
        pods: list[list[ChainResult]] = [[], []]
        threads = [threading.Thread(target=run_pod, args=(cluster.kubeconfig, pod)) for pod in pods]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        for index, pod in enumerate(pods, start=1):
            rows.append([str(round_number), f"pod {index}", " -> ".join(r.stopped_at for r in pod)])
            assert pod and pod[-1].succeeded, "\n".join(r.output() for r in pod)
            for attempt in pod:
                for step, result in attempt.results:
                    # A race may cost a retry (exit 1); it must never look like bad input.
                    assert result.exit_code in (0, 1), f"{step.name}:\n{result.output}"
        problems = chain.differences(expected, chain.snapshot(cluster))
        assert not problems, "\n".join(problems)
    reports.add(
        "two chains at once",
        reports.table(["round", "pod", "runs (a failed run restarts the pod)"], rows),
    )


def concurrent_change(cluster: Cluster) -> None:
    """What a person or the operator might change meanwhile: labels, spec.deployment, and a
    config field the user's configuration does not set."""
    cluster.kube.merge_patch(
        CR,
        {
            "metadata": {"labels": {"changed-by": "someone-else"}},
            "spec": {
                "deployment": {"replicaCount": 3},
                "config": {"serviceChannels": {"enabled": False}},
            },
        },
        retry_safe=False,
    )


@pytest.mark.parametrize(
    ("step", "occurrence", "annotation"),
    [
        # The CR's PATCHes in a chain: each step's write, then its fleet record's.
        (chain.MIGRATOR, 1, kyma.ANNOTATION_MIGRATED),
        (chain.BACKUP, 3, kyma.ANNOTATION_BACKED_UP),
        (chain.CLEANER, 5, kyma.ANNOTATION_CLEANED),
    ],
    ids=lambda v: getattr(v, "name", None) or str(v),
)
def test_a_concurrent_change_of_the_cr_is_not_lost_and_neither_is_the_step(
    cluster: Cluster, fault_proxy: FaultProxy, step: chain.Step, occurrence: int, annotation: str
) -> None:
    """The change lands between the step's read of the CR and its write (the proxy runs it
    just before forwarding the step's write): the write's resourceVersion precondition fails,
    the step re-reads and writes again, and both changes survive."""
    legacy.fresh_install(cluster)
    fault_proxy.add(
        Rule(
            hook(lambda: concurrent_change(cluster)),
            "PATCH",
            re.escape(CR),
            dry_run=False,
            occurrence=occurrence,
        )
    )
    result = chain.run_chain(fault_proxy.kubeconfig)
    assert result.succeeded, result.output()

    writes = [
        r.upstream_status
        for r in fault_proxy.snapshot()
        if r.request.path == CR
        and r.request.writes
        and r.request.user_agent.endswith(step.name[3:])
    ]
    assert 409 in writes, f"the change did not race the step's write: {writes}"
    cr = cluster.cr()
    assert cr is not None
    assert cr["metadata"]["labels"]["changed-by"] == "someone-else"
    assert cr["spec"]["deployment"]["replicaCount"] == 3
    assert cr["spec"]["config"]["serviceChannels"]["enabled"] is False
    assert cr["metadata"]["annotations"][annotation] == "true"
    assert cr["spec"]["config"]["subaccountSubdomain"] == "example-subdomain"
    assert cr["spec"]["config"]["servers"]["proxy"]["http"]["port"] == 20003


def keep_writing(cluster: Cluster, stop: threading.Event, prefix: str, written: list[str]) -> None:
    count = 0
    while not stop.is_set():
        count += 1
        value = f"{prefix}-{count}"
        cluster.kube.merge_patch(CR, {"metadata": {"labels": {"writer": value}}}, retry_safe=False)
        written.append(value)
        # Several changes a second: far busier than an operator or a person, and still leaves
        # the migrator's read-validate-write a window now and then.
        time.sleep(WRITER_INTERVAL)


WRITER_INTERVAL = 0.15


def test_a_busy_writer_during_repeated_migrations_loses_nothing(cluster: Cluster) -> None:
    """Free-running: a writer changes a label several times a second while the migrator runs."""
    for round_number in range(3):
        legacy.fresh_install(cluster)
        stop = threading.Event()
        written: list[str] = []
        thread = threading.Thread(
            target=keep_writing, args=(cluster, stop, str(round_number), written)
        )
        thread.start()
        results: list[ToolResult] = []
        try:
            # Each conflict costs the migrator a re-plan; after a bounded number it exits 1
            # and the kubelet restarts it. Either way nothing may be lost.
            for _ in range(MAX_RESTARTS + 1):
                results.append(chain.run_in_process(chain.MIGRATOR, cluster.kubeconfig))
                if results[-1].exit_code != 1:
                    break
        finally:
            stop.set()
            thread.join()
        assert results[-1].exit_code == 0, results[-1].output
        assert written, "the writer never wrote: the test would prove nothing"
        cr = cluster.cr()
        assert cr is not None
        assert cr["metadata"]["labels"]["writer"] == written[-1]
        assert cr["metadata"]["annotations"][kyma.ANNOTATION_MIGRATED] == "true"
        assert cr["spec"]["config"]["subaccountSubdomain"] == "example-subdomain"
