"""A real single node beside the test control plane: containerd (with runc and the CNI bridge),
kubelet, kube-controller-manager and kube-scheduler, next to its own kube-apiserver and etcd.

Used by the `node` pytest fixture (tests/conftest.py, tests/support/node.py), by `make node` /
`make node-down`, by
`make demo-node` and by `make bench`:

    python -m hack.devenv.node start DIR            # prints the kubeconfig path
    python -m hack.devenv.node load-images DIR REF...
    python -m hack.devenv.node stop DIR

What the node needs on the host and how it is put back (see README, "The node tests"):

- root and writable cgroups (v1 here); Debian's containerd, runc, CNI plugins and a static
  busybox (hack/node/setup.sh installs them); kubelet, kube-controller-manager and
  kube-scheduler built once beside the apiserver (hack/controlplane/build-node.sh).
- the kubelet refuses a loopback node IP, so the node IP is the default route's source
  address; the apiserver serves there (Pods reach it) and the `kubernetes` Service address is
  forwarded to it by one DNAT rule (there is no kube-proxy), in a chain of its own.
- the kubelet and the CNI bridge plugin change host sysctls: they are saved before the start
  and written back at the stop. Paths fixed outside the state directory
  (/var/lib/kubelet/device-plugins, /run/containerd/s, /var/lib/cni/results, /run/netns,
  /var/log/containers) are cleaned of what the node put there. Only processes the node
  started are ended: its own, the containerd shims of its containerd, and what runs in its
  cgroups.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hack.devenv.controlplane import ControlPlane, issue, write_kubeconfig
from hack.devenv.node import components
from hack.devenv.node.host import (
    BRIDGE,
    COMPONENTS,
    FIXED_PATHS,
    NODE_NAME,
    OWNER,
    clean_cgroups,
    clean_fixed_paths,
    default_route_address,
    end,
    forward_service,
    listing,
    load_state,
    new_entries,
    read_sysctls,
    restore_sysctls,
    running_node,
    same_process,
    shims_of,
    start_time,
    state_file,
    unforward_service,
    unmount,
)


@dataclass
class Node:
    folder: Path
    node_ip: str = ""
    plane: ControlPlane | None = None
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.folder / "controlplane" / "kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.folder / "controlplane" / "audit.log"

    @property
    def pki(self) -> Path:
        return self.folder / "controlplane" / "pki"

    @property
    def containerd_address(self) -> str:
        return str(self.folder / "containerd" / "containerd.sock")

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    def save(self) -> None:
        state_file(self.folder).write_text(json.dumps(self.state, indent=2))

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            args,
            stdout=open(self.logs / f"{name}.log", "ab"),  # noqa: SIM115 - the child keeps it
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.state.setdefault("processes", {})[name] = [process.pid, start_time(process.pid)]
        self.save()
        return process

    # -- start --------------------------------------------------------------------------------

    def start(self, timeout: float = 120.0, *, held: bool = True) -> None:
        """Start the control plane and the node; stops whatever started when a step fails.
        `held`: the node belongs to this process (a test session, a benchmark), and a later
        start stops it as abandoned once this process is gone; `make node` starts it unheld."""
        components.install_packages()
        bins = components.node_binaries()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.node_ip = self.node_ip or default_route_address()
        recover_abandoned()
        # Everything that is put back at the stop is recorded before anything changes.
        self.state = {
            "node_ip": self.node_ip,
            "sysctls": read_sysctls(),
            "fixed": {path: listing(path) for path in FIXED_PATHS},
            "processes": {},
        }
        if held:
            self.state["holder"] = [os.getpid(), start_time(os.getpid())]
        self.save()
        OWNER.write_text(str(self.folder))
        try:
            self._start(bins, timeout)
        except BaseException:
            stop(self.folder)
            raise

    def _start(self, bins: Path, timeout: float) -> None:
        plane = ControlPlane(self.folder / "controlplane", node_ip=self.node_ip)
        self.plane = plane
        plane.start()
        self.state["processes"]["etcd"] = [plane.etcd.pid, start_time(plane.etcd.pid)]  # type: ignore[union-attr]
        self.state["processes"]["kube-apiserver"] = [
            plane.apiserver.pid,  # type: ignore[union-attr]
            start_time(plane.apiserver.pid),  # type: ignore[union-attr]
        ]
        self.state["api_port"] = plane.api_port
        self.save()
        self._certificates()
        components.start_containerd(self)
        forward_service(self.node_ip, plane.api_port)
        self.state["forwarded"] = True
        self.save()
        components.start_kubelet(self, bins)
        components.start_controllers(self, bins)
        self._wait_ready(timeout)

    def _certificates(self) -> None:
        pki = self.pki
        (pki / "kubelet-serving.ext").write_text(
            f"subjectAltName=IP:{self.node_ip},DNS:{NODE_NAME}\nextendedKeyUsage=serverAuth\n"
        )
        issue(pki, "kubelet-serving", f"/CN={NODE_NAME}", "kubelet-serving.ext")
        issue(pki, "kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}")
        issue(pki, "controller-manager", "/CN=system:kube-controller-manager")
        issue(pki, "scheduler", "/CN=system:kube-scheduler")
        for user in ("kubelet", "controller-manager", "scheduler"):
            self._kubeconfig(user)

    def _kubeconfig(self, user: str) -> Path:
        assert self.plane is not None
        path = self.folder / f"{user}.kubeconfig"
        return write_kubeconfig(path, self.plane.server, self.pki, user)

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ctr", "--address", self.containerd_address, "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=check,
        )

    def load_images(self, refs: list[str]) -> None:
        """podman's images -> containerd's k8s.io namespace (no registry: save and import)."""
        with tempfile.TemporaryDirectory(prefix="cp-node-images-") as tmp:
            archive = Path(tmp) / "images.tar"
            subprocess.run(
                ["podman", "save", "--format", "docker-archive", "-m", "-o", str(archive), *refs],
                check=True,
                capture_output=True,
            )
            # Unpacked into the CRI's snapshotter now, not at the first container's start.
            result = self.ctr(
                "images", "import", "--snapshotter", "overlayfs", str(archive), check=False
            )
            if result.returncode != 0:
                raise RuntimeError(f"ctr images import: {result.stderr}")

    def tail(self, name: str, size: int = 4000) -> str:
        try:
            return (self.logs / f"{name}.log").read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name in COMPONENTS:
                entry = self.state["processes"].get(name)
                if entry and not same_process(entry):
                    raise RuntimeError(f"{name} exited:\n{self.tail(name)}")
            try:
                node = self.api_get(f"/api/v1/nodes/{NODE_NAME}")
                ready = any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in node.get("status", {}).get("conditions", [])
                )
                taints = [t["key"] for t in node.get("spec", {}).get("taints") or []]
                self.api_get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt")
                self.api_get("/api/v1/namespaces/default/serviceaccounts/default")
                if ready and not taints:
                    return
                last = f"ready={ready} taints={taints}"
            except (OSError, urllib.error.HTTPError) as err:
                last = str(err)
            time.sleep(0.25)
        raise RuntimeError(
            f"the node was not Ready within {timeout}s ({last}):\n{self.tail('kubelet')}"
        )

    # -- talking to the apiserver without the tools' client (text answers, watches) -----------

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def api_raw(self, path: str, timeout: float = 10.0) -> bytes:
        server = f"https://{self.node_ip}:{self.state['api_port']}"
        with urllib.request.urlopen(
            server + path, context=self.ssl_context(), timeout=timeout
        ) as answer:
            data: bytes = answer.read()
            return data

    def api_get(self, path: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.api_raw(path))
        return loaded

    def stop(self) -> None:
        stop(self.folder)


def recover_abandoned() -> None:
    """A node whose processes are gone without a stop (its test session was killed) still
    left the host changed: stop it now, which puts back what it recorded."""
    try:
        folder = Path(OWNER.read_text().strip())
    except OSError:
        return
    state = load_state(folder)
    if state is None or state.get("stopped"):
        OWNER.unlink(missing_ok=True)
        return
    if running_node() is None:
        print(f"stopping an abandoned test node (state in {folder})", file=sys.stderr)
        if not stop(folder):
            shutil.rmtree(folder, ignore_errors=True)


# -- stop ----------------------------------------------------------------------------------------


def _delete_pods(folder: Path, state: dict[str, Any]) -> None:
    """Ask the kubelet to stop every Pod (network torn down through CNI, volumes unmounted)
    while it still runs; best effort, bounded."""
    node = Node(folder, node_ip=state.get("node_ip", ""), state=state)
    if "api_port" not in state:
        return
    try:
        pods = node.api_get("/api/v1/pods")["items"]
    except (OSError, urllib.error.HTTPError, ValueError):
        return
    context = node.ssl_context()
    server = f"https://{node.node_ip}:{state['api_port']}"
    for pod in pods:
        meta = pod["metadata"]
        request = urllib.request.Request(
            f"{server}/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
            "?gracePeriodSeconds=0",
            method="DELETE",
        )
        with contextlib.suppress(OSError, urllib.error.HTTPError):
            urllib.request.urlopen(request, context=context, timeout=5).close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        tasks = node.ctr("tasks", "ls", "-q", check=False)
        if tasks.returncode != 0 or not tasks.stdout.strip():
            return
        time.sleep(0.5)


def _remove_runtime_leftovers(folder: Path, state: dict[str, Any], problems: list[str]) -> None:
    """Whatever containers the kubelet did not stop: killed and deleted through containerd."""
    node = Node(folder, state=state)
    listed = node.ctr("tasks", "ls", "-q", check=False)
    if listed.returncode != 0:
        return
    for task in listed.stdout.split():
        node.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
    for task in listed.stdout.split():
        for _ in range(20):
            if node.ctr("tasks", "delete", "-f", task, check=False).returncode == 0:
                break
            time.sleep(0.2)
    containers = node.ctr("containers", "ls", "-q", check=False).stdout.split()
    for container in containers:
        node.ctr("containers", "delete", container, check=False)


def stop(folder: Path) -> list[str]:
    """Stop a node started in `folder` and put the host back; idempotent. Returns what could
    not be put back (also printed)."""
    state = load_state(folder)
    problems: list[str] = []
    if state is None:
        return problems
    processes: dict[str, list[Any]] = state.get("processes", {})
    address = state.get("containerd_address", "")
    # Nothing may recreate Pods while they are stopped.
    for name in ("kube-controller-manager", "kube-scheduler"):
        if name in processes:
            end(processes[name])
    kubelet = processes.get("kubelet")
    if kubelet and same_process(kubelet) and address:
        _delete_pods(folder, state)
    if kubelet:
        end(kubelet)
    if address and processes.get("containerd") and same_process(processes["containerd"]):
        _remove_runtime_leftovers(folder, state, problems)
    if "containerd" in processes:
        end(processes["containerd"])
    for pid in shims_of(address) if address else []:
        end([pid, start_time(pid)], timeout=5)
    for name in ("kube-apiserver", "etcd"):
        if name in processes:
            end(processes[name])
    clean_cgroups(problems)
    created_netns = new_entries("/run/netns", state, prefix="cni-")
    unmount((str(folder), *created_netns), problems)
    for path in created_netns:
        with contextlib.suppress(OSError):
            os.unlink(path)
    if state.get("forwarded"):
        unforward_service(problems)
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)
    clean_fixed_paths(folder, state, problems)
    restore_sysctls(state.get("sysctls", {}), problems)
    with contextlib.suppress(OSError):
        if OWNER.read_text().strip() == str(folder):
            OWNER.unlink()
    state["processes"] = {}
    state["stopped"] = True
    state_file(folder).write_text(json.dumps(state, indent=2))
    for problem in problems:
        print(f"node stop: {problem}", file=sys.stderr)
    return problems
