"""A real single node beside the test control plane: containerd (with runc and the CNI bridge),
kubelet, kube-controller-manager and kube-scheduler, next to its own kube-apiserver and etcd.

Used by the `node` pytest fixture (tests/conftest.py), by `make node` / `make node-down`, by
`make demo-node` and by `make bench`:

    python -m tests.support.node start DIR            # prints the kubeconfig path
    python -m tests.support.node load-images DIR REF...
    python -m tests.support.node stop DIR

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
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.controlplane import REPO, ControlPlane, _free_port, _issue

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
    owner = _owner()
    if owner is not None:
        return f"another test node runs on this machine (state in {owner})"
    return None


def _binaries_built() -> bool:
    cache = os.environ.get("CP_CONTROLPLANE_CACHE")
    return bool(cache) and all(
        (Path(str(cache)) / name).exists() for name in ("kubelet", "kube-apiserver")
    )


def _owner() -> Path | None:
    """The state directory of a node that runs on this machine, if one does."""
    try:
        folder = Path(OWNER.read_text().strip())
    except OSError:
        return None
    state = _load_state(folder)
    if not state or state.get("stopped"):
        return None
    holder = state.get("holder")
    if holder and not _same_process(holder):
        return None  # the test session that held it is gone: abandoned
    if any(_same_process(p) for p in state.get("processes", {}).values()):
        return folder
    return None


def recover_abandoned() -> None:
    """A node whose processes are gone without a stop (its test session was killed) still
    left the host changed: stop it now, which puts back what it recorded."""
    try:
        folder = Path(OWNER.read_text().strip())
    except OSError:
        return
    state = _load_state(folder)
    if state is None or state.get("stopped"):
        OWNER.unlink(missing_ok=True)
        return
    if _owner() is None:
        print(f"stopping an abandoned test node (state in {folder})", file=sys.stderr)
        if not stop(folder):
            shutil.rmtree(folder, ignore_errors=True)


def skip_or_fail(reason: str) -> None:
    """Skipped on a developer machine that cannot run the node; a failure under CI."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"{reason}; under CI the node tests must run")
    pytest.skip(f"{reason}; set CI=true to make this a failure")


# -- preparation: packages, binaries, images ----------------------------------------------------


def install_packages() -> None:
    subprocess.run(["bash", str(SETUP_SCRIPT)], check=True)


def node_binaries() -> Path:
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(result.stdout.strip().splitlines()[-1])


def standin_images() -> dict[str, str]:
    """The pause image and the stand-in operator image, built FROM scratch with podman."""
    out = subprocess.run(
        ["bash", str(IMAGES_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    pause, operator = out.strip().splitlines()[-2:]
    return {"pause": pause, "operator": operator}


# -- processes ------------------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
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


def _same_process(entry: list[Any]) -> bool:
    """Is (pid, start time) still that very process (not a reused pid)?"""
    pid, started = int(entry[0]), str(entry[1])
    return _start_time(pid) == started


def _end(entry: list[Any], timeout: float = 20.0) -> None:
    """End one process the node started (and its process group), waiting for it."""
    pid = int(entry[0])
    if not _same_process(entry):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _same_process(entry):
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    for _ in range(50):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not _same_process(entry):
            return
        time.sleep(0.1)


def _shims_of(address: str) -> list[int]:
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


# -- sysctls, paths, mounts, cgroups ------------------------------------------------------------


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    values = {}
    for key in SYSCTLS:
        with contextlib.suppress(OSError):
            values[key] = _sysctl_path(key).read_text().strip()
    return values


def _restore_sysctls(saved: dict[str, str], problems: list[str]) -> None:
    for key, value in saved.items():
        try:
            path = _sysctl_path(key)
            if path.read_text().strip() != value:
                path.write_text(value + "\n")
        except OSError as err:
            problems.append(f"sysctl {key}={value}: {err}")


def _listing(path: str) -> list[str] | None:
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


def _unmount(prefixes: tuple[str, ...], problems: list[str]) -> None:
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


def _remove_empty_dirs(top: Path) -> None:
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


def _make_cgroup_root() -> None:
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


def _clean_cgroups(problems: list[str]) -> None:
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
            for root, dirs, _files in os.walk(top, topdown=False):
                for name in dirs:
                    with contextlib.suppress(OSError):
                        (Path(root) / name).rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()
        if not _cgroup_dirs():
            return
        time.sleep(0.1)
    problems.append(f"cgroups left: {[str(d) for d in _cgroup_dirs()]}")


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True)


def _forward_service(node_ip: str, api_port: int) -> None:
    """The `kubernetes` Service address (10.0.0.1:443) -> the apiserver, for Pods."""
    _unforward_service([])
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


def _unforward_service(problems: list[str]) -> None:
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


# -- state ----------------------------------------------------------------------------------------


def _state_file(folder: Path) -> Path:
    return folder / "node.json"


def _load_state(folder: Path) -> dict[str, Any] | None:
    try:
        loaded: dict[str, Any] = json.loads(_state_file(folder).read_text())
    except (OSError, ValueError):
        return None
    return loaded


# -- the node -------------------------------------------------------------------------------------


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

    def _save(self) -> None:
        _state_file(self.folder).write_text(json.dumps(self.state, indent=2))

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            args,
            stdout=open(self.logs / f"{name}.log", "ab"),  # noqa: SIM115 - the child keeps it
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.state.setdefault("processes", {})[name] = [process.pid, _start_time(process.pid)]
        self._save()
        return process

    # -- start --------------------------------------------------------------------------------

    def start(self, timeout: float = 120.0, *, held: bool = True) -> None:
        """Start the control plane and the node; stops whatever started when a step fails.
        `held`: the node belongs to this process (a test session, a benchmark), and a later
        start stops it as abandoned once this process is gone; `make node` starts it unheld."""
        install_packages()
        bins = node_binaries()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.node_ip = self.node_ip or default_route_address()
        recover_abandoned()
        # Everything that is put back at the stop is recorded before anything changes.
        self.state = {
            "node_ip": self.node_ip,
            "sysctls": read_sysctls(),
            "fixed": {path: _listing(path) for path in FIXED_PATHS},
            "processes": {},
        }
        if held:
            self.state["holder"] = [os.getpid(), _start_time(os.getpid())]
        self._save()
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
        self.state["processes"]["etcd"] = [plane.etcd.pid, _start_time(plane.etcd.pid)]  # type: ignore[union-attr]
        self.state["processes"]["kube-apiserver"] = [
            plane.apiserver.pid,  # type: ignore[union-attr]
            _start_time(plane.apiserver.pid),  # type: ignore[union-attr]
        ]
        self.state["api_port"] = plane.api_port
        self._save()
        self._certificates()
        self._start_containerd()
        _forward_service(self.node_ip, plane.api_port)
        self.state["forwarded"] = True
        self._save()
        self._start_kubelet(bins)
        self._start_controllers(bins)
        self._wait_ready(timeout)

    def _certificates(self) -> None:
        pki = self.pki
        (pki / "kubelet-serving.ext").write_text(
            f"subjectAltName=IP:{self.node_ip},DNS:{NODE_NAME}\nextendedKeyUsage=serverAuth\n"
        )
        _issue(pki, "kubelet-serving", f"/CN={NODE_NAME}", "kubelet-serving.ext")
        _issue(pki, "kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}")
        _issue(pki, "controller-manager", "/CN=system:kube-controller-manager")
        _issue(pki, "scheduler", "/CN=system:kube-scheduler")
        for user in ("kubelet", "controller-manager", "scheduler"):
            self._kubeconfig(user)

    def _kubeconfig(self, user: str) -> Path:
        assert self.plane is not None
        path = self.folder / f"{user}.kubeconfig"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "test",
                            "cluster": {
                                "server": self.plane.server,
                                "certificate-authority": str(self.pki / "ca.crt"),
                            },
                        }
                    ],
                    "users": [
                        {
                            "name": user,
                            "user": {
                                "client-certificate": str(self.pki / f"{user}.crt"),
                                "client-key": str(self.pki / f"{user}.key"),
                            },
                        }
                    ],
                    "contexts": [{"name": "test", "context": {"cluster": "test", "user": user}}],
                    "current-context": "test",
                },
                indent=2,
            )
        )
        return path

    def _start_containerd(self) -> None:
        base = self.folder / "containerd"
        cni = self.folder / "cni"
        (cni / "net.d").mkdir(parents=True, exist_ok=True)
        (cni / "net.d" / "10-cp-node.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": CNI_NETWORK,
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            "ipMasq": False,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_SUBNET}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(cni / "networks"),
                            },
                        }
                    ],
                },
                indent=2,
            )
        )
        base.mkdir(parents=True, exist_ok=True)
        images = standin_images()
        self.state["pause_image"] = images["pause"]
        self.state["operator_image"] = images["operator"]
        cri = '[plugins."io.containerd.grpc.v1.cri"'
        config = f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{self.containerd_address}"

[ttrpc]
  address = "{self.containerd_address}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"

{cri}]
  sandbox_image = "{images["pause"]}"
  # runc may not set the oom_score_adj of -998 that containerd asks for (no CAP_SYS_RESOURCE).
  restrict_oom_score_adj = true
  enable_selinux = false

{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false

{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{cni / "net.d"}"
"""
        (base / "config.toml").write_text(config)
        self._spawn("containerd", ["containerd", "--config", str(base / "config.toml")])
        self.state["containerd_address"] = self.containerd_address
        self._save()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.ctr("version", check=False).returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"containerd did not start:\n{self._tail('containerd')}")
        self.load_images([images["pause"], images["operator"]])

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

    def _start_kubelet(self, bins: Path) -> None:
        root = self.folder / "kubelet"
        root.mkdir(exist_ok=True)
        _make_cgroup_root()
        pki = self.pki
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{CGROUP_ROOT}",
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_address}",
            "address": self.node_ip,
            "port": _free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": _free_port(),
            "tlsCertFile": str(pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "podLogsDir": str(self.folder / "pod-logs"),
            "volumePluginDir": str(root / "volume-plugins"),
            "makeIPTablesUtilChains": False,
            "resolvConf": "/etc/resolv.conf",
            "clusterDomain": "cluster.local",
            "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "nodeStatusUpdateFrequency": "2s",
            "nodeStatusReportFrequency": "10s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
            "shutdownGracePeriod": "0s",
            "protectKernelDefaults": False,
        }
        (self.folder / "kubelet.yaml").write_text(json.dumps(config, indent=2))
        self._spawn(
            "kubelet",
            [
                str(bins / "kubelet"),
                f"--config={self.folder / 'kubelet.yaml'}",
                f"--kubeconfig={self.folder / 'kubelet.kubeconfig'}",
                f"--root-dir={root}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={self.node_ip}",
                "--v=1",
            ],
        )

    def _start_controllers(self, bins: Path) -> None:
        pki = self.pki
        kcm = str(self.folder / "controller-manager.kubeconfig")
        self._spawn(
            "kube-controller-manager",
            [
                str(bins / "kube-controller-manager"),
                f"--kubeconfig={kcm}",
                f"--authentication-kubeconfig={kcm}",
                f"--authorization-kubeconfig={kcm}",
                "--bind-address=127.0.0.1",
                f"--secure-port={_free_port()}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--v=1",
            ],
        )
        scheduler = str(self.folder / "scheduler.kubeconfig")
        self._spawn(
            "kube-scheduler",
            [
                str(bins / "kube-scheduler"),
                f"--kubeconfig={scheduler}",
                f"--authentication-kubeconfig={scheduler}",
                f"--authorization-kubeconfig={scheduler}",
                "--bind-address=127.0.0.1",
                f"--secure-port={_free_port()}",
                "--leader-elect=false",
                "--v=1",
            ],
        )

    def _tail(self, name: str, size: int = 4000) -> str:
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
                if entry and not _same_process(entry):
                    raise RuntimeError(f"{name} exited:\n{self._tail(name)}")
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
            f"the node was not Ready within {timeout}s ({last}):\n{self._tail('kubelet')}"
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


# -- stop ------------------------------------------------------------------------------------------


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
    state = _load_state(folder)
    problems: list[str] = []
    if state is None:
        return problems
    processes: dict[str, list[Any]] = state.get("processes", {})
    address = state.get("containerd_address", "")
    # Nothing may recreate Pods while they are stopped.
    for name in ("kube-controller-manager", "kube-scheduler"):
        if name in processes:
            _end(processes[name])
    kubelet = processes.get("kubelet")
    if kubelet and _same_process(kubelet) and address:
        _delete_pods(folder, state)
    if kubelet:
        _end(kubelet)
    if address and processes.get("containerd") and _same_process(processes["containerd"]):
        _remove_runtime_leftovers(folder, state, problems)
    if "containerd" in processes:
        _end(processes["containerd"])
    for pid in _shims_of(address) if address else []:
        _end([pid, _start_time(pid)], timeout=5)
    for name in ("kube-apiserver", "etcd"):
        if name in processes:
            _end(processes[name])
    _clean_cgroups(problems)
    created_netns = _new_entries("/run/netns", state, prefix="cni-")
    _unmount((str(folder), *created_netns), problems)
    for path in created_netns:
        with contextlib.suppress(OSError):
            os.unlink(path)
    if state.get("forwarded"):
        _unforward_service(problems)
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)
    _clean_fixed_paths(folder, state, problems)
    _restore_sysctls(state.get("sysctls", {}), problems)
    with contextlib.suppress(OSError):
        if OWNER.read_text().strip() == str(folder):
            OWNER.unlink()
    state["processes"] = {}
    state["stopped"] = True
    _state_file(folder).write_text(json.dumps(state, indent=2))
    for problem in problems:
        print(f"node stop: {problem}", file=sys.stderr)
    return problems


def _new_entries(path: str, state: dict[str, Any], prefix: str = "") -> list[str]:
    before = state.get("fixed", {}).get(path) or []
    now = _listing(path) or []
    return [f"{path}/{n}" for n in now if n not in before and n.startswith(prefix)]


def _clean_fixed_paths(folder: Path, state: dict[str, Any], problems: list[str]) -> None:
    fixed: dict[str, list[str] | None] = state.get("fixed", {})
    # The kubelet's device-plugin socket directory: only kubelets use it.
    if fixed.get("/var/lib/kubelet") is None:
        shutil.rmtree("/var/lib/kubelet", ignore_errors=True)
    else:
        for name in _new_entries("/var/lib/kubelet", state):
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
            _remove_empty_dirs(Path(path))
    for path in FIXED_PATHS:
        if fixed.get(path) is None and Path(path).exists():
            problems.append(f"{path} did not exist before the node and is not empty now")


# -- the pytest session's node ------------------------------------------------------------------


@dataclass
class NodeCluster:
    """The node's cluster as the tests use it: the admin Cluster, the Node, and the images
    (step name -> reference, and the stand-in operator) loaded into its containerd."""

    cluster: Any  # tests.support.cluster.Cluster
    node: Node
    steps: dict[str, str]
    operator: str

    def log(self, pod: dict[str, Any], container: str, previous: bool = False) -> str:
        from tests.support.pods import container_log

        return container_log(self.node.api_raw, pod, container, previous)


def enabled_reason() -> str | None:
    """Why the node tests are off on this run, or None (CP_NODE_TESTS=0 turns them off)."""
    if os.environ.get("CP_NODE_TESTS", "1") == "0":
        return "CP_NODE_TESTS=0"
    return None


def session() -> Iterator[NodeCluster]:
    """For the `node` session fixture: skips (fails under CI) where the machine cannot run a
    node; otherwise the node with the step images loaded, stopped at the end."""
    from tests.support.cluster import FIXTURES, Cluster
    from tests.support.images import build_images

    off = enabled_reason()
    if off:
        import pytest

        pytest.skip(f"node tests switched off ({off})")
    reason = unavailable_reason()
    if reason:
        skip_or_fail(reason)
    images = build_images()
    folder = Path(tempfile.mkdtemp(prefix="cp-node-"))
    node = Node(folder)
    node.start()
    try:
        node.load_images(list(images.refs.values()))
        cluster = Cluster(node.kubeconfig, node.audit_log)
        cluster.apply_file(FIXTURES / "crd-connectivityproxy.yaml")
        yield NodeCluster(cluster, node, dict(images.refs), node.state["operator_image"])
    finally:
        problems = stop(folder)
        if not problems:
            shutil.rmtree(folder, ignore_errors=True)
    if problems:
        raise RuntimeError(f"the node left the host changed: {problems} (state in {folder})")


# -- command line ----------------------------------------------------------------------------------


def start_detached(link: Path) -> Path:
    """For `make node`: reuse a running node whose state `link` names, or start one."""
    if link.is_symlink() and _owner() == link.resolve():
        return link.resolve() / "controlplane" / "kubeconfig"
    if link.is_symlink():
        stop_detached(link)
    folder = Path(tempfile.mkdtemp(prefix="cp-node-"))
    node = Node(folder)
    node.start(held=False)
    link.unlink(missing_ok=True)
    link.symlink_to(folder)
    return node.kubeconfig


def stop_detached(link: Path) -> None:
    """Stop the node `link` names, or else the one that runs on this machine (a test session's
    that was killed, say)."""
    if link.is_symlink():
        folder = link.resolve()
        stop(folder)
        shutil.rmtree(folder, ignore_errors=True)
        link.unlink()
        return
    with contextlib.suppress(OSError):
        folder = Path(OWNER.read_text().strip())
        print(f"stopping the test node in {folder}", file=sys.stderr)
        if not stop(folder):
            shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    usage = "usage: python -m tests.support.node start|stop LINK | load-images LINK REF..."
    if len(argv) < 3 or argv[1] not in ("start", "stop", "load-images"):
        print(usage, file=sys.stderr)
        return 2
    link = Path(argv[2]).absolute()
    if argv[1] == "start":
        reason = unavailable_reason() if _owner() != link.resolve() else None
        if reason:
            print(f"cannot start the node: {reason}", file=sys.stderr)
            return 1
        print(start_detached(link))
    elif argv[1] == "stop":
        stop_detached(link)
    else:
        folder = link.resolve()
        state = _load_state(folder)
        if state is None:
            print(f"no node in {link}", file=sys.stderr)
            return 1
        Node(folder, node_ip=state["node_ip"], state=state).load_images(argv[3:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
