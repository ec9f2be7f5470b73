"""Where the cluster is and who we are, in kubectl's order of precedence.

1. an explicit ``--kubeconfig`` (and ``--context``);
2. the ``KUBECONFIG`` list, merged as kubectl merges it: for every map key and every named
   cluster, user and context, the first file that sets it wins (so the first file's
   current-context wins; the Python client gets this wrong);
3. the in-cluster configuration (``KUBERNETES_SERVICE_HOST``);
4. ``~/.kube/config``.

Kubeconfigs are read here rather than with the kubernetes client because importing that
client costs ~0.4 s of a 0.6 s budget; it is imported only for exec and auth-provider users.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import UsageError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class Connection:
    """Everything needed to open TLS connections to one apiserver."""

    server: str
    source: str
    ca_file: str | None = None
    ca_data: bytes | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    insecure: bool = False
    tls_server_name: str | None = None

    def bearer_token(self) -> str | None:
        # Projected service-account tokens rotate, so the file is read per client.
        if self.token_file:
            return Path(self.token_file).read_text().strip()
        return self.token


def resolve(
    kubeconfig: str | None,
    context: str | None,
    environ: dict[str, str] | None = None,
    home: Path | None = None,
) -> Connection:
    env = dict(os.environ) if environ is None else environ
    if kubeconfig:
        return _from_files([kubeconfig], context, f"--kubeconfig {kubeconfig}")
    kubeconfig_env = env.get("KUBECONFIG", "")
    paths = [p for p in kubeconfig_env.split(os.pathsep) if p]
    existing = [p for p in paths if Path(p).is_file()]
    if existing:
        return _from_files(existing, context, f"KUBECONFIG={kubeconfig_env}")
    if env.get("KUBERNETES_SERVICE_HOST") and not context:
        return _in_cluster(env)
    default = (home or Path.home()) / ".kube" / "config"
    if default.is_file():
        return _from_files([str(default)], context, str(default))
    raise UsageError(
        "no cluster configured: pass --kubeconfig, set KUBECONFIG, run in a pod, "
        "or create ~/.kube/config"
    )


def _in_cluster(env: dict[str, str]) -> Connection:
    host = env["KUBERNETES_SERVICE_HOST"]
    port = env.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:  # IPv6
        host = f"[{host}]"
    token_file = SERVICE_ACCOUNT_DIR / "token"
    ca_file = SERVICE_ACCOUNT_DIR / "ca.crt"
    if not token_file.is_file():
        raise UsageError(f"in-cluster config: {token_file} is missing")
    return Connection(
        server=f"https://{host}:{port}",
        source="in-cluster",
        ca_file=str(ca_file) if ca_file.is_file() else None,
        token_file=str(token_file),
    )


def _load_yaml(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as err:
        raise UsageError(f"kubeconfig {path}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise UsageError(f"kubeconfig {path}: not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"kubeconfig {path}: not a mapping")
    return data


def _merge(paths: list[str]) -> tuple[dict[str, Any], dict[str, Path]]:
    """kubectl's merge: first file wins per key and per named entry."""
    merged: dict[str, Any] = {"clusters": {}, "users": {}, "contexts": {}}
    origin: dict[str, Path] = {}  # "clusters/<name>" -> the file it came from, for relative paths
    for path in paths:
        data = _load_yaml(path)
        for section, inner in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            for entry in data.get(section) or []:
                name = entry.get("name") if isinstance(entry, dict) else None
                if name is None or name in merged[section]:
                    continue
                merged[section][name] = entry.get(inner) or {}
                origin[f"{section}/{name}"] = Path(path).resolve().parent
        if "current-context" not in merged and data.get("current-context"):
            merged["current-context"] = data["current-context"]
    return merged, origin


def _from_files(paths: list[str], context: str | None, source: str) -> Connection:
    merged, origin = _merge(paths)
    context_name = context or merged.get("current-context")
    if not context_name:
        raise UsageError(f"{source}: no current-context; pass --context")
    ctx = merged["contexts"].get(context_name)
    if ctx is None:
        raise UsageError(f"{source}: context {context_name!r} not found")
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    cluster = merged["clusters"].get(cluster_name)
    if cluster is None or not cluster.get("server"):
        raise UsageError(f"{source}: context {context_name!r}: cluster {cluster_name!r} not found")
    user = merged["users"].get(user_name, {}) if user_name else {}
    if user.get("exec") or user.get("auth-provider"):
        return _via_kubernetes_client(paths, context_name, source)
    cluster_dir = origin[f"clusters/{cluster_name}"]
    user_dir = origin.get(f"users/{user_name}", cluster_dir)

    def rel(base: Path, value: str | None) -> str | None:
        return str(base / value) if value else None

    def data(value: str | None) -> bytes | None:
        return base64.b64decode(value) if value else None

    return Connection(
        server=str(cluster["server"]).rstrip("/"),
        source=f"{source} context {context_name}",
        ca_file=rel(cluster_dir, cluster.get("certificate-authority")),
        ca_data=data(cluster.get("certificate-authority-data")),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=cluster.get("tls-server-name"),
        cert_file=rel(user_dir, user.get("client-certificate")),
        key_file=rel(user_dir, user.get("client-key")),
        cert_data=data(user.get("client-certificate-data")),
        key_data=data(user.get("client-key-data")),
        token=user.get("token"),
        token_file=rel(user_dir, user.get("tokenFile")),
    )


def _via_kubernetes_client(paths: list[str], context: str, source: str) -> Connection:
    """exec and auth-provider plugins: let the kubernetes client run them."""
    from kubernetes import client, config

    configuration = client.Configuration()
    merger = config.kube_config.KubeConfigMerger(os.pathsep.join(paths))  # type: ignore[no-untyped-call]
    loader = config.kube_config.KubeConfigLoader(  # type: ignore[no-untyped-call]
        config_dict=merger.config, active_context=context, config_base_path=None
    )
    loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
    auth = configuration.api_key.get("authorization", "")
    return Connection(
        server=configuration.host.rstrip("/"),
        source=f"{source} context {context} (exec)",
        ca_file=configuration.ssl_ca_cert,
        cert_file=configuration.cert_file,
        key_file=configuration.key_file,
        token=auth.removeprefix("Bearer ") or None,
        insecure=not configuration.verify_ssl,
    )
