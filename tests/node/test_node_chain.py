"""The chain as it runs in production: deploy/ applied to a cluster with a real node (kubelet,
containerd, runc, controller-manager, scheduler), the three steps as init containers of the
operator Pod, a stand-in operator as its main container, in a namespace that enforces the
`restricted` Pod Security Standard.

What only a kubelet shows: the order of the init containers, its restart backoff after a failing
step, the projected ServiceAccount token, PodSecurity admission of deploy/ as written, each
step's log through `pods/log?container=`, a Pod deleted mid-chain and recreated by its
ReplicaSet, and two Pods of a rollout running their chains at once.

Skipped where the machine cannot run a node (not root, no writable cgroups), a failure under
CI=true; CP_NODE_TESTS=0 switches them off. See README, "The node tests"."""

from __future__ import annotations

import copy
import itertools
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from common import backups, kyma, reasons, record
from common.cluster.client import resource_path
from common.cr import annotations_of
from common.errors import ApiError
from hack.devenv import legacy
from hack.devenv import pods as P
from tests.support import chain
from tests.support.node import NodeCluster

pytestmark = [pytest.mark.node, pytest.mark.cluster]

MARKS = (kyma.ANNOTATION_MIGRATED, kyma.ANNOTATION_BACKED_UP, kyma.ANNOTATION_CLEANED)
SERVICE_MAPPINGS = resource_path(*legacy.SERVICE_MAPPINGS)


def deploy_objects(node: NodeCluster) -> list[dict[str, Any]]:
    return P.kustomize(images=P.deploy_images(node.steps, node.operator))


def legacy_left(node: NodeCluster) -> list[str]:
    from cleaner import plan as cleaner_plan

    left = []
    for obj in cleaner_plan.LEGACY_OBJECTS:
        kind = obj.kind
        path = resource_path(kind.group, kind.version, kind.resource, obj.namespace, obj.name)
        if node.cluster.kube.get(path) is not None:
            left.append(str(obj))
    return left


def assert_migrated(node: NodeCluster) -> None:
    """The CR migrated, backed up and cleaned; verified backups; no legacy object left; the
    ServiceMappings handed over."""
    cluster = node.cluster
    cr = cluster.cr()
    assert cr is not None
    marks = annotations_of(cr)
    assert {key: marks.get(key) for key in MARKS} == dict.fromkeys(MARKS, "true")
    assert cr["spec"]["config"]["subaccountId"] == "1b3c5d7e-9f21-4a6b-8c0d-2e4f6a8b0c1d"
    for name in kyma.SOURCES:
        backup = cluster.configmap(kyma.BACKUP_NAMESPACE, name)
        assert backup is not None, name
        assert backups.digest_problem(backup) is None, name
    assert legacy_left(node) == []
    mappings = list(cluster.kube.list(SERVICE_MAPPINGS))
    assert mappings
    for mapping in mappings:
        labels = mapping["metadata"].get("labels") or {}
        assert labels.get("app.kubernetes.io/managed-by") == "sap.connectivity.proxy.operator"


def assert_clean_logs(node: NodeCluster, pod: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each step's log, read back through the apiserver: JSON lines, none at error level."""
    found = {}
    for step in P.STEPS:
        text = node.log(pod, step)
        lines = P.json_lines(text)
        assert lines, f"{step}: no JSON log lines:\n{text}"
        assert all(line.get("logger") == step for line in lines), text
        assert not [line for line in lines if line["level"] == "error"], text
        found[step] = lines
    return found


def wait_pod(
    node: NodeCluster, what: str, check: Callable[[dict[str, Any]], bool], timeout: float = 120
) -> dict[str, Any]:
    """The first live Pod for which `check` holds."""

    def find() -> dict[str, Any] | None:
        for pod in P.live_pods(node.cluster):
            if check(pod):
                return pod
        return None

    found: dict[str, Any] = P.wait_for(
        what, find, timeout, explain=lambda: P.describe(node.cluster)
    )
    return found


# -- the real thing ----------------------------------------------------------------------------


def test_deploy_runs_migrator_backup_cleaner_then_the_operator(node_cluster: NodeCluster) -> None:
    node = node_cluster
    P.apply_deploy(node.cluster, deploy_objects(node))
    pod = P.wait_operator_running(node.cluster)

    assert P.kubectl_status(pod) == "Running"
    runs = P.step_runs(pod)
    assert [(step, code) for step, code, *_ in runs] == [(s, 0) for s in P.STEPS], runs
    for (_, _, _, _, finished), (_, _, _, started, _) in itertools.pairwise(runs):
        assert started >= finished, runs  # one after the other, in deploy/'s order
    inits = P.init_statuses(pod)
    assert all(inits[step]["restartCount"] == 0 for step in P.STEPS)
    assert_migrated(node)

    logs = assert_clean_logs(node, pod)
    assert any("migrated and marked" in line["msg"] for line in logs["migrator"])
    assert any("backed up and marked" in line["msg"] for line in logs["backup"])
    assert any(line["msg"].startswith("deleted") for line in logs["cleaner"])
    assert "operator stand-in running" in node.log(pod, "operator")

    # The token the steps used was the kubelet's projected one (ServiceAccount admission).
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    projected = [v for name, v in volumes.items() if name.startswith("kube-api-access-")]
    assert projected and projected[0]["projected"]["sources"][0]["serviceAccountToken"]

    # The namespace really enforces `restricted`: a Pod without deploy/'s securityContext is
    # refused there, so the Pod above was admitted as deploy/ writes it.
    bare = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "not-restricted", "namespace": P.NAMESPACE},
        "spec": {"containers": [{"name": "c", "image": node.operator}]},
    }
    with pytest.raises(ApiError) as refused:
        node.cluster.kube.create(P.PODS_PATH, bare, dryRun="All")
    assert refused.value.status == 403 and "restricted" in str(refused.value)


# -- kubelet semantics --------------------------------------------------------------------------


def test_a_missing_grant_added_back_is_retried_with_backoff_to_running(
    node_cluster: NodeCluster,
) -> None:
    """The migrator's Role lacks reading the CR (every step's does: the migrator, first,
    fails). The kubelet restarts it with backoff; once the grant is back the Pod runs with no
    one acting on it."""
    node = node_cluster
    objects = deploy_objects(node)
    broken = copy.deepcopy(objects)
    removed = 0
    for obj in broken:
        if obj["kind"] == "Role" and obj["metadata"]["namespace"] == "kyma-system":
            kept = [r for r in obj["rules"] if r["resources"] != ["connectivityproxies"]]
            removed += len(obj["rules"]) - len(kept)
            obj["rules"] = kept
    assert removed == 3
    P.apply_deploy(node.cluster, broken)

    def failed_once(pod: dict[str, Any]) -> bool:
        found = P.init_statuses(pod).get("migrator") or {}
        last = (found.get("lastState") or {}).get("terminated") or {}
        return last.get("exitCode") == 1

    pod = wait_pod(node, "the migrator failed once", failed_once)
    uid = pod["metadata"]["uid"]
    failed = P.init_statuses(pod)["migrator"]["lastState"]["terminated"]
    log = node.log(pod, "migrator")
    errors = "\n".join(line["msg"] for line in P.json_lines(log) if line["level"] == "error")
    assert 'cannot get resource "connectivityproxies"' in errors, log
    cr = node.cluster.cr()
    assert cr is not None and kyma.ANNOTATION_MIGRATED not in annotations_of(cr)

    fixed_at = time.monotonic()
    node.cluster.apply([obj for obj in objects if obj["kind"] == "Role"])
    pod = P.wait_operator_running(node.cluster)
    waited = time.monotonic() - fixed_at

    migrator = P.init_statuses(pod)["migrator"]
    assert migrator["restartCount"] >= 1
    assert migrator["state"]["terminated"]["exitCode"] == 0
    # Backoff: the successful run started well after the first failure ended (the kubelet
    # waits 10 s, then 20 s, ...; its status keeps only the latest run, so the failure is the
    # one observed above).
    pause = P._time(migrator["state"]["terminated"]["startedAt"]) - P._time(failed["finishedAt"])
    assert pause.total_seconds() >= 5, (failed, migrator["state"])
    assert pod["metadata"]["uid"] == uid  # the same Pod, restarted by the kubelet, not replaced
    assert len(P.pods(node.cluster)) == 1
    assert waited < 90, f"the kubelet's backoff should retry within its 5 minute cap: {waited}"
    assert_migrated(node)


def test_a_pod_deleted_mid_chain_is_recreated_and_converges(node_cluster: NodeCluster) -> None:
    node = node_cluster
    P.apply_deploy(node.cluster, deploy_objects(node))

    def mid_chain(pod: dict[str, Any]) -> bool:
        inits = P.init_statuses(pod)
        migrator = (inits.get("migrator") or {}).get("state") or {}
        done = (migrator.get("terminated") or {}).get("exitCode") == 0
        return done and not P.operator_running(pod)

    first = wait_pod(node, "the migrator done, the operator not yet", mid_chain, timeout=120)
    node.cluster.kube.delete(
        resource_path("", "v1", "pods", P.NAMESPACE, first["metadata"]["name"])
    )
    pod = P.wait_operator_running(node.cluster)

    assert pod["metadata"]["uid"] != first["metadata"]["uid"]
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert [code for _, code, *_ in P.step_runs(pod)] == [0, 0, 0]
    assert_migrated(node)
    assert_clean_logs(node, pod)


def test_a_rollout_with_max_surge_runs_two_chains_at_once_and_ends_as_one(
    node_cluster: NodeCluster,
) -> None:
    node = node_cluster
    objects = deploy_objects(node)

    # One Pod, one chain: the state it leaves.
    P.apply_deploy(node.cluster, objects)
    P.wait_operator_running(node.cluster)
    single = chain.snapshot(node.cluster)

    # Again from the same legacy installation, with a rollout while the first Pod is in its
    # chain: maxSurge lets the second Pod start while the first still runs its steps.
    P.remove_deployment(node.cluster)
    legacy.fresh_install(node.cluster)
    P.label_namespace_restricted(node.cluster)
    surged = copy.deepcopy(objects)
    for obj in surged:
        if obj["kind"] == "Deployment":
            obj["spec"]["strategy"] = {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            }
    P.apply_deploy(node.cluster, surged)
    P.wait_for("the first Pod", lambda: P.pods(node.cluster), 30)
    for obj in surged:
        if obj["kind"] == "Deployment":
            template = obj["spec"]["template"]["metadata"]
            template.setdefault("annotations", {})["kubectl.kubernetes.io/restartedAt"] = "now"
    P.apply_deploy(node.cluster, surged)

    seen: dict[str, dict[str, Any]] = {}

    def rolled_out() -> bool:
        for pod in P.pods(node.cluster):
            seen[pod["metadata"]["uid"]] = pod
        deployment = node.cluster.kube.get(P.DEPLOYMENT_PATH) or {}
        status = deployment.get("status") or {}
        live = P.live_pods(node.cluster)
        return (
            status.get("updatedReplicas") == 1
            and status.get("availableReplicas") == 1
            and len(P.pods(node.cluster)) == 1
            and P.operator_running(live[0])
        )

    P.wait_for(
        "the rollout", rolled_out, 180, interval=0.1, explain=lambda: P.describe(node.cluster)
    )
    windows = [window for pod in seen.values() if (window := P.chain_window(pod))]
    assert len(seen) == 2 and len(windows) == 2, f"two chains expected: {windows}"
    (start_a, end_a), (start_b, end_b) = windows
    assert start_a <= end_b and start_b <= end_a, f"the chains did not overlap: {windows}"

    assert_migrated(node)
    # The operator Deployment itself differs (the rollout), not what the chains did.
    surged_state = chain.snapshot(node.cluster)
    for state in (single, surged_state):
        del state[P.DEPLOYMENT_PATH]
    differences = chain.differences(single, surged_state)
    assert differences == [], "\n".join(differences)


def test_a_refusing_step_leaves_the_pod_in_init_crash_loop_back_off(
    node_cluster: NodeCluster,
) -> None:
    """Shared tenant mode configured, but its service-key Secret is gone: the migrator refuses
    (exit 3) and changes nothing but the record on the CR; the kubelet keeps retrying, and
    `kubectl get pod` shows Init:CrashLoopBackOff with the reason in the step's log, in the
    init container's termination message and in one Warning Event whose count grows."""
    node = node_cluster
    text = legacy.legacy_configmap()["data"][kyma.CONFIG_KEY].replace(
        "tenantMode: dedicated", "tenantMode: shared"
    )
    assert "tenantMode: shared" in text
    node.cluster.apply([legacy.legacy_configmap(text)])
    before = node.cluster.cr()
    assert before is not None
    P.apply_deploy(node.cluster, deploy_objects(node))

    pod = wait_pod(
        node,
        "Init:CrashLoopBackOff",
        lambda pod: P.kubectl_status(pod) == "Init:CrashLoopBackOff",
        timeout=120,
    )
    migrator = P.init_statuses(pod)["migrator"]
    assert migrator["lastState"]["terminated"]["exitCode"] == 3
    assert "backup" not in P.init_statuses(pod) or "terminated" not in (
        P.init_statuses(pod)["backup"].get("state") or {}
    )
    assert not P.operator_running(pod)
    log = node.log(pod, "migrator")
    errors = [line["msg"] for line in P.json_lines(log) if line["level"] == "error"]
    assert any("kyma-system/connectivity-service-service-key" in m for m in errors), log
    after = node.cluster.cr()
    assert after is not None
    # Nothing changed but the record of why (README "Fleet view").
    assert after["spec"] == before["spec"]
    marks = annotations_of(after)
    assert not any(marks.get(key) for key in MARKS)
    found = record.Record.of(marks)
    assert found is not None
    assert (found.step, found.result, found.reason) == (
        "migrator",
        "blocked",
        reasons.SHARED_MODE_SECRET_MISSING,
    )
    assert legacy_left(node) != []

    # What kubectl describe pod shows: the termination message names the reason.
    terminated = migrator["lastState"]["terminated"]
    message = terminated.get("message") or ""
    assert message.startswith(f"{reasons.SHARED_MODE_SECRET_MISSING}: tenantMode is shared"), (
        terminated
    )
    assert "kyma-system/connectivity-service-service-key" in message
    # And kubectl describe connectivityproxy: one Warning Event, its repeats counted.
    warnings = [
        event
        for event in node.cluster.kube.list(resource_path("", "v1", "events", kyma.NAMESPACE))
        if event.get("type") == "Warning"
        and event["involvedObject"].get("uid") == after["metadata"]["uid"]
    ]
    assert len(warnings) == 1, warnings
    assert warnings[0]["reason"] == reasons.SHARED_MODE_SECRET_MISSING
    assert warnings[0]["source"]["component"] == "cp-migrator"
    assert warnings[0]["count"] >= migrator["restartCount"] >= 1, (warnings, migrator)
    kubectl = shutil.which("kubectl")
    if kubectl:  # the same, as a person reads it
        base = [kubectl, "--kubeconfig", str(node.cluster.kubeconfig), "describe", "-n"]
        shown = subprocess.run(
            [*base, P.NAMESPACE, "pod", pod["metadata"]["name"]],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f"{reasons.SHARED_MODE_SECRET_MISSING}: tenantMode is shared" in shown, shown
        shown = subprocess.run(
            [*base, kyma.NAMESPACE, "connectivityproxy", kyma.CR_NAME],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert re.search(rf"Warning\s+{reasons.SHARED_MODE_SECRET_MISSING}\s", shown), shown
