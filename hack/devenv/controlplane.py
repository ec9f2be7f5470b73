"""A real kube-apiserver and etcd on 127.0.0.1, the way envtest runs them.

Used by the pytest session fixture and by `make cluster` / `make cluster-down`:

    python -m hack.devenv.controlplane start DIR   # prints the kubeconfig path
    python -m hack.devenv.controlplane stop DIR

There is no controller manager: namespaces never finish deleting and nothing is
garbage-collected, so tests delete objects one by one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "hack" / "controlplane" / "build.sh"
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
"""


def binaries_dir() -> Path:
    """Build (or reuse) the binaries; honours KUBEBUILDER_ASSETS."""
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(folder: Path, extra_sans: tuple[str, ...] = ()) -> None:
    """A small CA, a serving certificate for 127.0.0.1/::1/localhost (and `extra_sans`, such as
    "IP:10.0.0.1"), an admin client certificate in system:masters, and the service-account
    signing key pair."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "3650",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=cp-migration-test-ca",
        cwd=folder,
    )
    (folder / "san.ext").write_text(
        "subjectAltName="
        + ",".join(
            ("IP:127.0.0.1", "IP:::1", "DNS:localhost", "DNS:kubernetes.default.svc", *extra_sans)
        )
        + "\n"
        "extendedKeyUsage=serverAuth\n"
    )
    (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject, ext in (
        ("serving", "/CN=kube-apiserver", "san.ext"),
        ("admin", "/O=system:masters/CN=cp-admin", "client.ext"),
    ):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            subject,
            cwd=folder,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-out",
            f"{name}.crt",
            "-extfile",
            ext,
            cwd=folder,
        )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=folder)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=folder)


def issue(folder: Path, name: str, subject: str, ext: str = "client.ext") -> None:
    """A key and a certificate signed by the CA of `folder` (made by make_pki)."""
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
        "-subj", subject, cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "3650", "-out", f"{name}.crt", "-extfile", ext, cwd=folder,
    )  # fmt: skip


def write_kubeconfig(path: Path, server: str, pki: Path, user: str) -> Path:
    """A kubeconfig at `path` for `user`, with the client certificate `pki` holds for it."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "test",
                "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(pki / f"{user}.crt"),
                    "client-key": str(pki / f"{user}.key"),
                },
            }
        ],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": user}}],
        "current-context": "test",
    }
    path.write_text(json.dumps(config, indent=2))
    return path


@dataclass
class ControlPlane:
    folder: Path
    api_port: int = 0
    etcd_port: int = 0
    etcd: subprocess.Popen[bytes] | None = None
    apiserver: subprocess.Popen[bytes] | None = None
    # Set by hack/devenv/node/ only: the apiserver serves on this address (the node's, which
    # Pods reach) instead of 127.0.0.1, with Node authorization, NodeRestriction, the
    # ServiceAccount admission plugin and kubelet client certificates. Unset, nothing changes.
    node_ip: str | None = None
    service_ip: str = "10.0.0.1"

    @property
    def server(self) -> str:
        return f"https://{self.node_ip or '127.0.0.1'}:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.folder / "kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.folder / "audit.log"

    @property
    def pki(self) -> Path:
        return self.folder / "pki"

    def start(self, timeout: float = 120.0) -> None:
        bins = binaries_dir()
        self.folder.mkdir(parents=True, exist_ok=True)
        extra_sans = (f"IP:{self.node_ip}", f"IP:{self.service_ip}") if self.node_ip else ()
        make_pki(self.pki, extra_sans)
        if self.node_ip:
            issue(self.pki, "kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client")
        self.etcd_port, peer_port, self.api_port = free_port(), free_port(), free_port()
        logs = self.folder / "logs"
        logs.mkdir(exist_ok=True)
        etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self.etcd = subprocess.Popen(
            [
                str(bins / "etcd"),
                "--data-dir",
                str(self.folder / "etcd"),
                "--name",
                "test",
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                peer_url,
                "--initial-advertise-peer-urls",
                peer_url,
                "--initial-cluster",
                f"test={peer_url}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
            stdout=open(logs / "etcd.log", "wb"),  # noqa: SIM115 - the child keeps it
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        (self.folder / "audit-policy.yaml").write_text(AUDIT_POLICY)
        pki = self.pki
        address = self.node_ip or "127.0.0.1"
        self.apiserver = subprocess.Popen(
            [
                str(bins / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={address}",
                f"--advertise-address={address}",
                f"--secure-port={self.api_port}",
                f"--cert-dir={self.folder / 'certs'}",
                f"--tls-cert-file={pki / 'serving.crt'}",
                f"--tls-private-key-file={pki / 'serving.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                *self._access_args(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                f"--audit-policy-file={self.folder / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-mode=blocking",
                "--v=0",
            ],
            stdout=open(logs / "kube-apiserver.log", "wb"),  # noqa: SIM115 - the child keeps it
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._write_kubeconfig()
        self._write_pids()
        self._wait_ready(timeout)

    def _access_args(self) -> list[str]:
        if not self.node_ip:
            return ["--authorization-mode=RBAC", "--disable-admission-plugins=ServiceAccount"]
        pki = self.pki
        return [
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _write_kubeconfig(self) -> None:
        write_kubeconfig(self.kubeconfig, self.server, self.pki, "admin")

    def _write_pids(self) -> None:
        assert self.etcd and self.apiserver
        (self.folder / "pids").write_text(f"{self.etcd.pid} {self.apiserver.pid}\n")

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        context = self.ssl_context()
        last = ""
        while time.monotonic() < deadline:
            for name, process in (("etcd", self.etcd), ("kube-apiserver", self.apiserver)):
                if process is not None and process.poll() is not None:
                    log = (self.folder / "logs" / f"{name}.log").read_text()[-3000:]
                    self.stop()
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{log}")
            try:
                with urllib.request.urlopen(
                    f"{self.server}/readyz", context=context, timeout=2
                ) as answer:
                    if answer.status == 200:
                        return
            except Exception as err:
                last = str(err)
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the control plane was not ready within {timeout}s: {last}")

    def stop(self) -> None:
        for process in (self.apiserver, self.etcd):
            if process is None or process.poll() is not None:
                continue
            _stop_group(process.pid)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _stop_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; whoever inherited it may take a while to reap it.
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    return True


def start_detached(folder: Path) -> Path:
    """For `make cluster`: reuse a running control plane in `folder`, or start one."""
    pids = folder / "pids"
    if pids.exists() and all(_alive(int(p)) for p in pids.read_text().split()):
        return folder / "kubeconfig"
    if folder.exists():
        stop_detached(folder)
    state = Path(tempfile.mkdtemp(prefix="cp-controlplane-"))
    plane = ControlPlane(state)
    plane.start()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kubeconfig").write_text(plane.kubeconfig.read_text())
    (folder / "pids").write_text((state / "pids").read_text())
    (folder / "state").write_text(str(state))
    (folder / "audit.log").unlink(missing_ok=True)
    (folder / "audit.log").symlink_to(plane.audit_log)
    return folder / "kubeconfig"


def stop_detached(folder: Path) -> None:
    pids = folder / "pids"
    if pids.exists():
        for pid in reversed([int(p) for p in pids.read_text().split()]):
            _stop_group(pid)
            for _ in range(150):
                if not _alive(pid):
                    break
                time.sleep(0.1)
            else:
                os.killpg(pid, signal.SIGKILL)
        pids.unlink()
    state = folder / "state"
    if state.exists():
        subprocess.run(["rm", "-rf", state.read_text().strip()], check=False)
        state.unlink()
    # Nothing stale: a kubeconfig of a stopped apiserver and a link to a deleted audit log
    # would only mislead the next reader. The folder goes too when nothing else is in it.
    for name in ("kubeconfig", "audit.log"):
        (folder / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print("usage: python -m hack.devenv.controlplane start|stop DIR", file=sys.stderr)
        return 2
    folder = Path(argv[2]).resolve()
    if argv[1] == "start":
        print(start_detached(folder))
    else:
        stop_detached(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
