"""deploy/ as a user applies it to a cluster with a node, and what the kubelet then reports:
Pod phases, init container states (as `kubectl get pod` prints them), and logs."""

from __future__ import annotations

import copy
import json
import time
import urllib.error
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from common.cluster.client import resource_path
from common.errors import ApiError
from hack.devenv.cluster import REPO, Cluster, load_manifests

DEPLOY = REPO / "deploy"
NAMESPACE = "kyma-system"
DEPLOYMENT = "connectivity-proxy-operator"
SELECTOR = "app.kubernetes.io/name=connectivity-proxy-operator"
STEPS = ("migrator", "backup", "cleaner")
ENFORCE = "pod-security.kubernetes.io/enforce"
DEPLOYMENT_PATH = resource_path("apps", "v1", "deployments", NAMESPACE, DEPLOYMENT)
PODS_PATH = resource_path("", "v1", "pods", NAMESPACE)


# -- kubectl apply -k, with `kustomize edit set image` --------------------------------------------


def _split_image(image: str) -> tuple[str, str]:
    """(name, tag-or-digest suffix) as kustomize's image transformer matches them."""
    if "@" in image:
        name, _, digest = image.partition("@")
        return name, "@" + digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon:]
    return image, ""


def kustomize(folder: Path = DEPLOY, images: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The objects `kubectl apply -k folder` applies: the kustomization's resources in order,
    with its `images:` and then `images` (old name -> new reference, as `kustomize edit set
    image old=new` writes) applied to every container and init container."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    overrides: dict[str, str] = {}
    for entry in kustomization.get("images") or []:
        new = entry.get("newName", entry["name"])
        if "digest" in entry:
            new += "@" + entry["digest"]
        elif "newTag" in entry:
            new += ":" + entry["newTag"]
        overrides[entry["name"]] = new
    overrides.update(images or {})
    objects = [obj for name in kustomization["resources"] for obj in load_manifests(folder / name)]
    for obj in objects:
        spec = ((obj.get("spec") or {}).get("template") or {}).get("spec")
        if not spec:
            continue
        for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            name, _ = _split_image(container["image"])
            if name in overrides:
                container["image"] = overrides[name]
    return objects


def deploy_images(steps: dict[str, str], operator: str) -> dict[str, str]:
    """deploy/'s image names -> the locally built images."""
    found: dict[str, str] = {}
    for obj in kustomize():
        spec = ((obj.get("spec") or {}).get("template") or {}).get("spec")
        if not spec:
            continue
        for container in spec.get("initContainers") or []:
            found[_split_image(container["image"])[0]] = steps[container["name"]]
        for container in spec.get("containers") or []:
            found[_split_image(container["image"])[0]] = operator
    return found


def label_namespace_restricted(cluster: Cluster, namespace: str = NAMESPACE) -> None:
    """The namespace enforces the `restricted` Pod Security Standard (as Kyma labels it)."""
    cluster.ensure_namespace(namespace)
    cluster.kube.merge_patch(
        resource_path("", "v1", "namespaces", name=namespace),
        {"metadata": {"labels": {ENFORCE: "restricted"}}},
        retry_safe=True,
    )


def apply_deploy(cluster: Cluster, objects: list[dict[str, Any]]) -> None:
    """Create or update, as `kubectl apply` does; an update of the Deployment changes its spec
    (a rollout) and keeps what the controllers wrote."""
    for obj in objects:
        if obj["kind"] == "Deployment":
            current = cluster.kube.get(DEPLOYMENT_PATH)
            if current is not None:
                updated = copy.deepcopy(current)
                updated["spec"] = obj["spec"]
                updated["metadata"]["labels"] = obj["metadata"].get("labels") or {}
                cluster.kube.replace(DEPLOYMENT_PATH, updated)
                continue
        cluster.apply([obj])


# -- waiting --------------------------------------------------------------------------------------


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float = 120.0,
    interval: float = 0.2,
    explain: Callable[[], str] | None = None,
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            detail = explain() if explain else ""
            raise TimeoutError(f"{what}: not within {timeout:.0f}s\n{detail}")
        time.sleep(interval)


def pods(cluster: Cluster) -> list[dict[str, Any]]:
    return list(cluster.kube.list(PODS_PATH, label_selector=SELECTOR))


def live_pods(cluster: Cluster) -> list[dict[str, Any]]:
    return [p for p in pods(cluster) if not p["metadata"].get("deletionTimestamp")]


def operator_running(pod: dict[str, Any]) -> bool:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status["name"] == "operator" and "running" in (status.get("state") or {}):
            return True
    return False


def wait_operator_running(cluster: Cluster, timeout: float = 180.0) -> dict[str, Any]:
    """The one live Pod, once its operator container runs (all three steps done)."""

    def check() -> dict[str, Any] | None:
        live = live_pods(cluster)
        if len(live) == 1 and operator_running(live[0]) and len(pods(cluster)) == 1:
            return live[0]
        return None

    found: dict[str, Any] = wait_for(
        "the operator Pod running", check, timeout, explain=lambda: describe(cluster)
    )
    return found


def remove_deployment(cluster: Cluster, timeout: float = 120.0) -> None:
    """The Deployment and its Pods gone (the garbage collector removes the ReplicaSets)."""
    cluster.kube.delete(DEPLOYMENT_PATH)
    wait_for(
        "the operator Pods gone",
        lambda: not pods(cluster) and cluster.kube.get(DEPLOYMENT_PATH) is None,
        timeout,
        interval=0.5,
        explain=lambda: describe(cluster),
    )


# -- what the kubelet reports ---------------------------------------------------------------------


def init_statuses(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in (pod.get("status") or {}).get("initContainerStatuses") or []}


def kubectl_status(pod: dict[str, Any]) -> str:
    """The STATUS column of `kubectl get pod` (its printer's rules for init containers)."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    specs = (pod.get("spec") or {}).get("initContainers") or []
    inits = init_statuses(pod)
    for index, spec in enumerate(specs):
        found = inits.get(spec["name"])
        if found is None:
            return f"Init:0/{len(specs)}" if index == 0 else f"Init:{index}/{len(specs)}"
        state = found.get("state") or {}
        terminated = state.get("terminated")
        if terminated and terminated.get("exitCode") == 0:
            continue
        if terminated:
            why = terminated.get("reason") or f"ExitCode:{terminated.get('exitCode')}"
            return f"Init:{why}"
        waiting = state.get("waiting")
        if waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            return f"Init:{waiting['reason']}"
        return f"Init:{index}/{len(specs)}"
    for found in status.get("containerStatuses") or []:
        state = found.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason"):
            return str(state["waiting"]["reason"])
        if "terminated" in state:
            return str(state["terminated"].get("reason") or "Terminated")
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    return str(reason)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def step_runs(pod: dict[str, Any]) -> list[tuple[str, int, float, datetime, datetime]]:
    """(step, exit code, seconds, started, finished) of each finished init container's last
    run, in order."""
    runs = []
    for name, found in init_statuses(pod).items():
        terminated = (found.get("state") or {}).get("terminated")
        if terminated and terminated.get("startedAt") and terminated.get("finishedAt"):
            started, finished = _time(terminated["startedAt"]), _time(terminated["finishedAt"])
            seconds = (finished - started).total_seconds()
            runs.append((name, int(terminated["exitCode"]), seconds, started, finished))
    return runs


def chain_window(pod: dict[str, Any]) -> tuple[datetime, datetime] | None:
    """From the first step's start to the last step's end (or now, while one runs), as the
    kubelet reported them (whole seconds); None before any step started."""
    starts, ends = [], []
    for found in init_statuses(pod).values():
        state = found.get("state") or {}
        if "running" in state and state["running"].get("startedAt"):
            starts.append(_time(state["running"]["startedAt"]))
            ends.append(datetime.now(UTC))
        elif "terminated" in state and state["terminated"].get("startedAt"):
            starts.append(_time(state["terminated"]["startedAt"]))
            ends.append(_time(state["terminated"]["finishedAt"]))
    if not starts:
        return None
    return min(starts), max(ends)


def container_log(
    raw_get: Callable[[str], bytes], pod: dict[str, Any], container: str, previous: bool = False
) -> str:
    """`kubectl logs POD -c CONTAINER [--previous]`: pods/log through the apiserver. Without
    `previous`, the last run's log, also while the container waits in CrashLoopBackOff; with
    it, the run before (an init container's older runs are pruned once a newer one ended)."""
    meta = pod["metadata"]
    path = (
        resource_path("", "v1", "pods", meta["namespace"], meta["name"], "log")
        + f"?container={quote(container)}"
        + ("&previous=true" if previous else "")
    )
    try:
        return raw_get(path).decode(errors="replace")
    except urllib.error.HTTPError as err:
        return f"(no log: {err.code} {err.read().decode(errors='replace')})"


def json_lines(text: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def describe(cluster: Cluster) -> str:
    """Pods, their init container states, and recent events, for failure messages."""
    lines = []
    try:
        for pod in pods(cluster):
            lines.append(f"pod {pod['metadata']['name']}: {kubectl_status(pod)}")
            for name, found in init_statuses(pod).items():
                lines.append(
                    f"  {name}: restarts={found.get('restartCount')} "
                    f"state={json.dumps(found.get('state'))} "
                    f"last={json.dumps(found.get('lastState'))}"
                )
        events = cluster.kube.list(resource_path("", "v1", "events", NAMESPACE))
        for event in list(events)[-15:]:
            lines.append(
                f"event {event.get('reason')}: {event['involvedObject'].get('name')}: "
                f"{(event.get('message') or '')[:200]}"
            )
    except ApiError as err:
        lines.append(f"(describe failed: {err})")
    return "\n".join(lines)
