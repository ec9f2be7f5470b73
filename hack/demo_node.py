"""`make demo-node`: the demo as real Pods. A legacy 2.9.3 installation on the node's cluster
(`make node`), deploy/ applied as `kubectl apply -k` does with the locally built images, the
kubelet running migrator -> backup -> cleaner -> the (stand-in) operator, and at the end the
Pod's status with each init container's exit code and duration, and what each step logged."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hack.bench.node import TaskEvents
from hack.devenv import pods as P
from hack.devenv.cluster import FIXTURES, Cluster
from hack.devenv.images import build_images
from hack.devenv.node.host import load_state
from hack.devenv.node.node import Node


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--node", type=Path, required=True, help="the `make node` state link")
    args = parser.parse_args()
    folder = args.node.resolve()
    state = load_state(folder)
    if state is None:
        print(f"no node in {args.node}; run `make node` first", file=sys.stderr)
        return 1
    node = Node(folder, node_ip=state["node_ip"], state=state)
    cluster = Cluster(node.kubeconfig)

    print("== building the step images (podman) and loading them into the node's containerd")
    images = build_images()
    node.load_images(list(images.refs.values()))

    print("== a legacy 2.9.3 installation; kyma-system enforces the `restricted` Pod Security")
    P.remove_deployment(cluster)
    from hack.demo import service_mappings
    from hack.devenv import legacy

    cluster.apply_file(FIXTURES / "crd-connectivityproxy.yaml")
    legacy.fresh_install(cluster)
    cluster.apply(service_mappings(3))
    P.label_namespace_restricted(cluster)

    objects = P.kustomize(images=P.deploy_images(dict(images.refs), state["operator_image"]))
    print("== kubectl apply -k deploy/  (images: " + ", ".join(images.refs.values()) + ")")
    events = TaskEvents(node)  # containerd's task start/exit times, for the durations
    time.sleep(0.5)
    applied = time.monotonic()
    P.apply_deploy(cluster, objects)
    last = ""
    deadline = applied + 300
    pod = None
    while time.monotonic() < deadline:
        live = P.live_pods(cluster)
        if live:
            pod = live[0]
            status = P.kubectl_status(pod)
            if status != last:
                print(
                    f"   {time.monotonic() - applied:5.1f} s  {pod['metadata']['name']}  {status}"
                )
                last = status
            if P.operator_running(pod):
                break
        time.sleep(0.1)
    else:
        events.close()
        print(P.describe(cluster))
        return 1
    assert pod is not None
    time.sleep(0.3)
    events.close()

    print(f"== pod {P.NAMESPACE}/{pod['metadata']['name']}: {P.kubectl_status(pod)}")
    print(f"   {'container':<10} {'exit':>4} {'restarts':>8} {'duration':>9}")
    for step, code, seconds, _, _ in P.step_runs(pod):
        found = P.init_statuses(pod)[step]
        cid = str(found.get("containerID") or "").rpartition("://")[2]
        if cid in events.started and cid in events.exited:
            seconds = events.exited[cid] - events.started[cid]
        print(f"   {step:<10} {code:>4} {found['restartCount']:>8} {seconds:>8.2f}s")
    print("   (durations: each container's process from start to exit, from containerd)")
    for step in (*P.STEPS, "operator"):
        print(f"== kubectl logs -n {P.NAMESPACE} {pod['metadata']['name']} -c {step}")
        for line in P.json_lines(P.container_log(node.api_raw, pod, step)):
            kind = f"{line['kind']} " if line.get("kind") else ""
            where = f" [{kind}{line['object']}]" if line.get("object") else ""
            print(f"   {line['level']:<5} {line['msg']}{where}")
    cr = cluster.cr() or {}
    marks = {
        k: v
        for k, v in (cr.get("metadata", {}).get("annotations") or {}).items()
        if k.startswith("connectivityproxy.sap.com/")
    }
    print(f"== kyma-system/connectivity-proxy marks: {marks}")
    print(f"   kubeconfig for kubectl: {node.kubeconfig}   (make node-down stops the node)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
