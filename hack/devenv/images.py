"""The step images for the e2e tests: built once per session with podman on a local base image
(hack/base-image.sh, cached), and run the way the kubelet runs an init container."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest

from hack.devenv.cluster import REPO, Cluster, ToolResult

REGISTRY = os.environ.get("CP_TEST_IMAGE_REGISTRY", "localhost/cp-migration-test")
TAG = "test"
STEPS = ("migrator", "backup", "cleaner")
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# The deploy/ ServiceAccount, which the init containers run as.
SA_NAMESPACE = "kyma-system"
SA_NAME = "connectivity-proxy-operator"
LOG_DIR = REPO / "build" / "test-images"


BASE_IMAGE = "localhost/cp-migration-base:bookworm"  # hack/base-image.sh's default
SETUP_SCRIPT = "hack/podman-setup.sh"


def _skip_or_fail(reason: str) -> NoReturn:
    """Skipped on a developer machine, naming what is missing; a failure under CI=true."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}; under CI the image tests must run (.ci/run sets podman up)")
    pytest.skip(f"{reason}; set CI=true to make this a failure")


def _image_exists(image: str) -> bool:
    return (
        shutil.which("podman") is not None
        and subprocess.run(["podman", "image", "exists", image], check=False).returncode == 0
    )


def missing_tools(*, need_debootstrap: bool) -> list[str]:
    """What the image tests need and this machine lacks: podman and runc (the runtime the
    tests run containers with), and debootstrap when the local base image must be made."""
    wanted = ["podman", "runc"] + (["debootstrap"] if need_debootstrap else [])
    return [tool for tool in wanted if shutil.which(tool) is None and not _in_sbin(tool)]


def _in_sbin(tool: str) -> bool:
    # debootstrap lives in /usr/sbin, which is not on every user's PATH.
    return any(Path(folder, tool).exists() for folder in ("/usr/sbin", "/sbin"))


def _can_install() -> str | None:
    """Why hack/podman-setup.sh cannot run here (None: it can): it needs apt-get and root,
    or sudo without a password."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-query") is None:
        return "no apt-get (hack/podman-setup.sh installs from Debian packages)"
    if os.geteuid() == 0:
        return None
    if shutil.which("sudo") is None:
        return "not root and no sudo"
    check = subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False)
    return None if check.returncode == 0 else "not root and sudo asks for a password"


def ensure_tools(*, need_debootstrap: bool) -> None:
    """Install what the image tests need, as .ci/run does (hack/podman-setup.sh), or skip
    naming what is missing when this machine cannot install it."""
    missing = missing_tools(need_debootstrap=need_debootstrap)
    if not missing:
        return
    what = ", ".join(missing)
    why_not = _can_install()
    if why_not is not None:
        _skip_or_fail(
            f"{what} missing and not installable here ({why_not}); install with "
            f"`make podman` ({SETUP_SCRIPT})"
        )
    log = LOG_DIR / "podman-setup.log"
    completed = _logged(["bash", SETUP_SCRIPT], log)
    still = missing_tools(need_debootstrap=need_debootstrap)
    if completed.returncode != 0 or still:
        _skip_or_fail(
            f"{what} missing; {SETUP_SCRIPT} could not install "
            f"{', '.join(still) or 'them'} (exit {completed.returncode}, log {log}):\n"
            + completed.stdout[-2000:]
        )


def podman_or_skip() -> str:
    """podman's path (installed first when this machine can); skipped naming what is missing
    on a developer machine, a failure under CI."""
    ensure_tools(need_debootstrap=False)
    found = shutil.which("podman")
    assert found is not None
    return found


def _logged(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `args` in the checkout, its output (stdout and stderr) written to `log`."""
    completed = subprocess.run(
        args,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(completed.stdout)
    return completed


def _run_logged(args: list[str], log: Path, env: dict[str, str] | None = None) -> str:
    started = time.monotonic()
    completed = _logged(args, log, env)
    if completed.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} failed ({completed.returncode}) after "
            f"{time.monotonic() - started:.0f}s; log {log}:\n{completed.stdout[-4000:]}"
        )
    return completed.stdout


@dataclass(frozen=True)
class Images:
    base: str
    refs: dict[str, str]  # step -> image reference

    def __getitem__(self, step: str) -> str:
        return self.refs[step]


def build_images() -> Images:
    """The local base image (cached in podman's storage) and the three step images."""
    base = os.environ.get("CP_TEST_BASE_IMAGE")
    # debootstrap only makes the local base image; not needed once it exists (cached).
    ensure_tools(need_debootstrap=not base and not _image_exists(BASE_IMAGE))
    if not base:
        out = _run_logged(["bash", "hack/base-image.sh"], LOG_DIR / "base-image.log")
        base = out.strip().splitlines()[-1]
    out = _run_logged(
        ["bash", "hack/images.sh", "build"],
        LOG_DIR / "images.log",
        env={
            "CONTAINER_ENGINE": "podman",
            "IMAGE_REGISTRY": REGISTRY,
            "IMAGE_TAG": TAG,
            "BASE_IMAGE": base,
            "PYTHON": sys.executable,
        },
    )
    refs = out.strip().splitlines()[-3:]
    return Images(base=base, refs=dict(zip(STEPS, refs, strict=True)))


def inspect(ref: str) -> dict[str, Any]:
    out = subprocess.run(
        ["podman", "image", "inspect", ref], check=True, capture_output=True, text=True
    ).stdout
    found: dict[str, Any] = json.loads(out)[0]
    return found


# -- running a step as the kubelet would --------------------------------------------------------


@dataclass(frozen=True)
class Run(ToolResult):
    step: str = ""


def pod_like_args(network: str = "host") -> list[str]:
    """What a Pod with the deploy/ securityContext gives a container."""
    return [
        "--rm",
        "--runtime",
        "runc",
        "--network",
        network,
        "--user",
        "1337",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,size=16m,mode=1777",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    ]


def run_container(
    step: str,
    ref: str,
    args: list[str],
    extra: list[str],
    *,
    network: str = "host",
    timeout: float = 180,
) -> Run:
    completed = subprocess.run(
        ["podman", "run", *pod_like_args(network), *extra, ref, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(completed.returncode, completed.stdout, completed.stderr, step=step)


def _kubeconfig(cluster: Cluster) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(cluster.kubeconfig.read_text())
    return loaded


def service_account_dir(cluster: Cluster, folder: Path) -> Path:
    """`token` and `ca.crt`, as the kubelet projects them, readable by UID 1337."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    (folder / "token").write_text(cluster.mint_token(SA_NAMESPACE, SA_NAME))
    ca = _kubeconfig(cluster)["clusters"][0]["cluster"]
    if "certificate-authority-data" in ca:
        (folder / "ca.crt").write_bytes(base64.b64decode(ca["certificate-authority-data"]))
    else:
        (folder / "ca.crt").write_bytes(Path(ca["certificate-authority"]).read_bytes())
    (folder / "namespace").write_text(SA_NAMESPACE)
    for name in ("token", "ca.crt", "namespace"):
        (folder / name).chmod(0o644)
    return folder


def in_cluster_args(cluster: Cluster, sa_dir: Path) -> list[str]:
    server = urlsplit(cluster.kube.connection.server)
    return [
        "-e",
        f"KUBERNETES_SERVICE_HOST={server.hostname}",
        "-e",
        f"KUBERNETES_SERVICE_PORT={server.port or 443}",
        "-e",
        "CP_LOG_FORMAT=json",
        "-v",
        f"{sa_dir}:{SERVICE_ACCOUNT_DIR}:ro",
    ]


def embedded_kubeconfig(cluster: Cluster, folder: Path) -> Path:
    """The admin kubeconfig with its file references turned into embedded data, so that it
    works wherever it is mounted (as a person's ~/.kube/config usually does)."""
    config = _kubeconfig(cluster)
    for entry in config["clusters"]:
        inner = entry["cluster"]
        if "certificate-authority" in inner:
            inner["certificate-authority-data"] = _b64(inner.pop("certificate-authority"))
    for entry in config["users"]:
        inner = entry["user"]
        for key in ("client-certificate", "client-key"):
            if key in inner:
                inner[f"{key}-data"] = _b64(inner.pop(key))
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    path = folder / "config"
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o644)
    return path


def _b64(path: str) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()
