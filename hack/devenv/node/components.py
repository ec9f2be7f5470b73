"""The node's components: what they need installed and built, and how containerd (with runc
and the CNI bridge), the kubelet, kube-controller-manager and kube-scheduler are configured
and started for a Node (hack.devenv.node.node)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hack.devenv.controlplane import free_port
from hack.devenv.node.host import (
    BRIDGE,
    BUILD_SCRIPT,
    CGROUP_ROOT,
    CNI_NETWORK,
    IMAGES_SCRIPT,
    NODE_NAME,
    POD_SUBNET,
    SETUP_SCRIPT,
    make_cgroup_root,
)

if TYPE_CHECKING:
    from hack.devenv.node.node import Node


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


# -- starting -----------------------------------------------------------------------------------


def start_containerd(node: Node) -> None:
    base = node.folder / "containerd"
    cni = node.folder / "cni"
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
    node.state["pause_image"] = images["pause"]
    node.state["operator_image"] = images["operator"]
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
  address = "{node.containerd_address}"

[ttrpc]
  address = "{node.containerd_address}.ttrpc"

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
    node.spawn("containerd", ["containerd", "--config", str(base / "config.toml")])
    node.state["containerd_address"] = node.containerd_address
    node.save()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if node.ctr("version", check=False).returncode == 0:
            break
        time.sleep(0.2)
    else:
        raise RuntimeError(f"containerd did not start:\n{node.tail('containerd')}")
    node.load_images([images["pause"], images["operator"]])


def start_kubelet(node: Node, bins: Path) -> None:
    root = node.folder / "kubelet"
    root.mkdir(exist_ok=True)
    make_cgroup_root()
    pki = node.pki
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{node.containerd_address}",
        "address": node.node_ip,
        "port": free_port(),
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": free_port(),
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "podLogsDir": str(node.folder / "pod-logs"),
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
    (node.folder / "kubelet.yaml").write_text(json.dumps(config, indent=2))
    node.spawn(
        "kubelet",
        [
            str(bins / "kubelet"),
            f"--config={node.folder / 'kubelet.yaml'}",
            f"--kubeconfig={node.folder / 'kubelet.kubeconfig'}",
            f"--root-dir={root}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={node.node_ip}",
            "--v=1",
        ],
    )


def start_controllers(node: Node, bins: Path) -> None:
    pki = node.pki
    kcm = str(node.folder / "controller-manager.kubeconfig")
    node.spawn(
        "kube-controller-manager",
        [
            str(bins / "kube-controller-manager"),
            f"--kubeconfig={kcm}",
            f"--authentication-kubeconfig={kcm}",
            f"--authorization-kubeconfig={kcm}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
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
    scheduler = str(node.folder / "scheduler.kubeconfig")
    node.spawn(
        "kube-scheduler",
        [
            str(bins / "kube-scheduler"),
            f"--kubeconfig={scheduler}",
            f"--authentication-kubeconfig={scheduler}",
            f"--authorization-kubeconfig={scheduler}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            "--leader-elect=false",
            "--v=1",
        ],
    )
