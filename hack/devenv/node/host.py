"""The host a test node runs on: whether it can run one, and what the node changes on it,
recorded before the start and put back at the stop (see hack.devenv.node.node).

- the kubelet and the CNI bridge plugin change host sysctls: saved before the start, written
  back at the stop;
- paths fixed outside the state directory (FIXED_PATHS) are cleaned of what the node put
  there; mounts under the state directory and the network namespaces it made are unmounted;
- the node's cgroups are emptied and removed; the DNAT chain for the `kubernetes` Service is
  removed;
- only processes the node started are ended: its own (by pid and start time), the containerd
  shims of its containerd, and what runs in its cgroups.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hack.devenv.controlplane import REPO

NODE_NAME = "cp-test-node"
BRIDGE = "cpnode0"
CNI_NETWORK = "cp-node"
POD_SUBNET = "10.244.0.0/24"
SERVICE_IP = "10.0.0.1"
CHAIN = "CP-NODE-SVC"
CGROUP_ROOT = "cp-node"
COMMENT = "cp-migration test node"
SETUP_SCRIPT = REPO / "hack" / "node" / "setup.sh"
BUILD_SCRIPT = REPO / "hack" / "controlplane" / "build-node.sh"
IMAGES_SCRIPT = REPO / "hack" / "node" / "images.sh"
# One node per machine: the bridge, the DNAT chain and the fixed paths are machine-wide.
OWNER = Path("/run/cp-migration-node.owner")
# What the kubelet (setupKernelTunables) and the CNI bridge plugin (isGateway) may change.
SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
)
# Fixed paths outside the state directory that the node's components write to.
FIXED_PATHS = (
    "/var/lib/kubelet",
    "/run/containerd",
    "/var/lib/cni",
    "/run/netns",
    "/var/log/containers",
    "/var/log/pods",
)
COMPONENTS = ("kube-scheduler", "kube-controller-manager", "kubelet", "containerd")


# -- can this machine run a node ----------------------------------------------------------------


def unavailable_reason() -> str | None:
    """Why this machine cannot run the node, or None."""
    if sys.platform != "linux":
        return "the node needs Linux"
    if os.geteuid() != 0:
        return "the node needs root (containerd, runc and the kubelet manage cgroups and mounts)"
    probe = Path("/sys/fs/cgroup/memory") / f"cp-node-probe-{os.getpid()}"
    if not probe.parent.is_dir():
        probe = Path("/sys/fs/cgroup") / f"cp-node-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as err:
        return f"cgroups are not writable here ({probe.parent}: {err.strerror})"
    if not shutil.which("apt-get") and not shutil.which("containerd"):
        return "containerd is not installed and there is no apt-get to install it"
    if not shutil.which("go") and not _binaries_built():
        return "kubelet is not built and there is no Go toolchain to build it"
    try:
        default_route_address()
    except (OSError, subprocess.CalledProcessError, ValueError, KeyError, IndexError):
        return "no default route: the kubelet needs a non-loopback node IP"
    folder = running_node()
    if folder is not None:
        return f"another test node runs on this machine (state in {folder})"
    return None


def _binaries_built() -> bool:
    cache = os.environ.get("CP_CONTROLPLANE_CACHE")
    return bool(cache) and all(
        (Path(str(cache)) / name).exists() for name in ("kubelet", "kube-apiserver")
    )


def running_node() -> Path | None:
    """The state directory of a node that runs on this machine, if one does."""
    try:
        folder = Path(OWNER.read_text().strip())
    except OSError:
        return None
    state = load_state(folder)
    if not state or state.get("stopped"):
        return None
    holder = state.get("holder")
    if holder and not same_process(holder):
        return None  # the test session that held it is gone: abandoned
    if any(same_process(p) for p in state.get("processes", {}).values()):
        return folder
    return None


# -- processes ----------------------------------------------------------------------------------


def start_time(pid: int) -> str | None:
    """The start time of a live process (None once it is gone or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return None
    return fields[19]


def same_process(entry: list[Any]) -> bool:
    """Is (pid, start time) still that very process (not a reused pid)?"""
    pid, started = int(entry[0]), str(entry[1])
    return start_time(pid) == started


def end(entry: list[Any], timeout: float = 20.0) -> None:
    """End one process the node started (and its process group), waiting for it."""
    pid = int(entry[0])
    if not same_process(entry):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not same_process(entry):
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    for _ in range(50):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not same_process(entry):
            return
        time.sleep(0.1)


def shims_of(address: str) -> list[int]:
    """containerd shims started by the containerd listening on `address`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and b"containerd-shim" in args[0] and address.encode() in args:
            found.append(int(proc.name))
    return found


# -- sysctls, paths, mounts, cgroups, the Service address --------------------------------------


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    values = {}
    for key in SYSCTLS:
        with contextlib.suppress(OSError):
            values[key] = _sysctl_path(key).read_text().strip()
    return values


def restore_sysctls(saved: dict[str, str], problems: list[str]) -> None:
    for key, value in saved.items():
        try:
            path = _sysctl_path(key)
            if path.read_text().strip() != value:
                path.write_text(value + "\n")
        except OSError as err:
            problems.append(f"sysctl {key}={value}: {err}")


def listing(path: str) -> list[str] | None:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return []


def _mounts_under(prefixes: tuple[str, ...]) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == p or point.startswith(p.rstrip("/") + "/") for p in prefixes):
            points.append(point)
    # Deepest first; a point mounted twice appears twice.
    return sorted(points, key=lambda p: p.count("/"), reverse=True)


def unmount(prefixes: tuple[str, ...], problems: list[str]) -> None:
    for _ in range(3):
        points = _mounts_under(prefixes)
        if not points:
            return
        for point in points:
            result = subprocess.run(["umount", point], capture_output=True, text=True)
            if result.returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, text=True)
    left = _mounts_under(prefixes)
    if left:
        problems.append(f"mounts left: {left}")


def remove_empty_dirs(top: Path) -> None:
    """rmdir `top` and its empty subdirectories, bottom up; anything non-empty stays."""
    if not top.is_dir() or top.is_symlink():
        return
    for root, dirs, _files in os.walk(top, topdown=False):
        for name in dirs:
            with contextlib.suppress(OSError):
                (Path(root) / name).rmdir()
    with contextlib.suppress(OSError):
        top.rmdir()


def _cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy (v1 controllers, named ones, and the unified one)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[0] in ("cgroup", "cgroup2"):
            found.append(Path(left.split()[4]))
    return found


def make_cgroup_root() -> None:
    """The kubelet's cgroupRoot must exist in every hierarchy; a v1 cpuset child starts with
    no CPUs and memory nodes, so it gets its parent's."""
    for hierarchy in _cgroup_hierarchies():
        child = hierarchy / CGROUP_ROOT
        child.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / name).exists() and not (child / name).read_text().strip():
                (child / name).write_text((hierarchy / name).read_text())


def _cgroup_dirs() -> list[Path]:
    return [h / CGROUP_ROOT for h in _cgroup_hierarchies() if (h / CGROUP_ROOT).is_dir()]


def clean_cgroups(problems: list[str]) -> None:
    """Kill what still runs in the node's cgroups (only the node's containers can), then
    remove them, leaves first."""
    for top in _cgroup_dirs():
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                for pid in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
    for _ in range(50):
        for top in _cgroup_dirs():
            remove_empty_dirs(top)
        if not _cgroup_dirs():
            return
        time.sleep(0.1)
    problems.append(f"cgroups left: {[str(d) for d in _cgroup_dirs()]}")


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True)


def forward_service(node_ip: str, api_port: int) -> None:
    """The `kubernetes` Service address (10.0.0.1:443) -> the apiserver, for Pods."""
    unforward_service([])
    _iptables("-t", "nat", "-N", CHAIN)
    target = f"{node_ip}:{api_port}"
    rule = ["-d", f"{SERVICE_IP}/32", "-p", "tcp", "--dport", "443", "-j", "DNAT"]
    result = _iptables("-t", "nat", "-A", CHAIN, *rule, "--to-destination", target)
    if result.returncode != 0:
        raise RuntimeError(f"iptables: {result.stderr}")
    hook = ["-m", "comment", "--comment", COMMENT, "-j", CHAIN]
    result = _iptables("-t", "nat", "-I", "PREROUTING", *hook)
    if result.returncode != 0:
        raise RuntimeError(f"iptables: {result.stderr}")


def unforward_service(problems: list[str]) -> None:
    hook = ["-m", "comment", "--comment", COMMENT, "-j", CHAIN]
    while _iptables("-t", "nat", "-D", "PREROUTING", *hook).returncode == 0:
        pass
    if _iptables("-t", "nat", "-L", CHAIN, "-n").returncode == 0:
        _iptables("-t", "nat", "-F", CHAIN)
        result = _iptables("-t", "nat", "-X", CHAIN)
        if result.returncode != 0:
            problems.append(f"iptables chain {CHAIN}: {result.stderr.strip()}")


def default_route_address() -> str:
    """The source address of the default route: the machine's own address (nothing is sent)."""
    out = subprocess.run(
        ["ip", "-j", "route", "get", "1.0.0.1"], check=True, capture_output=True, text=True
    ).stdout
    routes = json.loads(out)
    return str(routes[0]["prefsrc"])


def new_entries(path: str, state: dict[str, Any], prefix: str = "") -> list[str]:
    before = state.get("fixed", {}).get(path) or []
    now = listing(path) or []
    return [f"{path}/{n}" for n in now if n not in before and n.startswith(prefix)]


def clean_fixed_paths(folder: Path, state: dict[str, Any], problems: list[str]) -> None:
    fixed: dict[str, list[str] | None] = state.get("fixed", {})
    # The kubelet's device-plugin socket directory: only kubelets use it.
    if fixed.get("/var/lib/kubelet") is None:
        shutil.rmtree("/var/lib/kubelet", ignore_errors=True)
    else:
        for name in new_entries("/var/lib/kubelet", state):
            shutil.rmtree(name, ignore_errors=True)
    # CNI results of the node's network only; podman may use the same directory.
    results = Path("/var/lib/cni/results")
    if results.is_dir():
        for entry in results.iterdir():
            if entry.name.startswith(f"{CNI_NETWORK}-"):
                entry.unlink(missing_ok=True)
    # /var/log/containers: the kubelet's links into the node's pod log directory.
    containers = Path("/var/log/containers")
    if containers.is_dir():
        for entry in containers.iterdir():
            if entry.is_symlink() and str(folder) in os.readlink(entry):
                entry.unlink(missing_ok=True)
    # /run/containerd/s: the shims' sockets (gone with the shims); empty directories go.
    for path in FIXED_PATHS:
        if fixed.get(path) is None:
            remove_empty_dirs(Path(path))
    for path in FIXED_PATHS:
        if fixed.get(path) is None and Path(path).exists():
            problems.append(f"{path} did not exist before the node and is not empty now")


# -- state --------------------------------------------------------------------------------------


def state_file(folder: Path) -> Path:
    return folder / "node.json"


def load_state(folder: Path) -> dict[str, Any] | None:
    try:
        loaded: dict[str, Any] = json.loads(state_file(folder).read_text())
    except (OSError, ValueError):
        return None
    return loaded
