"""Where the cluster is and who we are, in kubectl's order of precedence.

1. an explicit ``--kubeconfig`` (and ``--context``);
2. the ``KUBECONFIG`` list: missing files are skipped, but a list none of whose files exists
   is an error (never a fall-back to another cluster). Files merge as kubectl merges them: for
   every named cluster, user and context, and for ``current-context``, the first file wins;
3. ``~/.kube/config``;
4. the in-cluster configuration (``KUBERNETES_SERVICE_HOST``), when none of the above exists.

The files are read with ``kubernetes.config`` (exec plugins, auth-providers, client
certificates, CA, ``insecure-skip-tls-verify``, ``tls-server-name``, ``proxy-url``), which
never writes a kubeconfig back here. Reading and parsing happen in ``resolve``; credentials
(an exec plugin runs here) are loaded when the client is built, by ``Connection.load``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import RetryableError, UsageError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# kubeconfig user fields that impersonate another identity, and the headers kubectl sends.
IMPERSONATION = {"as": "Impersonate-User", "as-uid": "Impersonate-Uid"}


@dataclass(frozen=True)
class Connection:
    """One apiserver and one identity: what to log, and how to configure the client."""

    server: str
    source: str
    context: str | None = None
    user: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    # Read again for every request: projected and kubeconfig tokenFiles rotate.
    token_file: str | None = None
    # Impersonate-* headers, as kubectl sends them for a user's `as`, `as-groups`, `as-uid`.
    impersonate: tuple[tuple[str, str], ...] = ()
    # "exec" or "auth-provider" when a plugin supplies the credentials.
    plugin: str | None = None
    # Fills a kubernetes.client.Configuration (host, TLS, credentials, proxy).
    loader: Callable[[Any], None] | None = field(default=None, repr=False, compare=False)

    def bearer_token(self) -> str | None:
        if self.token_file:
            return read_token_file(self.token_file)
        return self.token

    def describe(self) -> str:
        parts = [self.server]
        if self.context:
            parts.append(f"context {self.context}")
        if self.user:
            parts.append(f"user {self.user}")
        if self.impersonate:
            parts.append("as " + ", ".join(value for _, value in self.impersonate))
        return ", ".join(parts) + f" (from {self.source})"

    def load(self, configuration: Any) -> None:
        """Fill a kubernetes.client.Configuration; errors name the cause and the source."""
        if self.loader is None:
            configuration.host = self.server
            return
        from kubernetes.config.config_exception import ConfigException

        try:
            self.loader(configuration)
        except (ConfigException, OSError, ValueError, KeyError) as err:
            raise UsageError(f"{self.source}: cannot load credentials: {err}") from err


def read_token_file(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise RetryableError(f"token file {path}: {err}") from err
    if not token:
        raise RetryableError(f"token file {path} is empty")
    return token


def resolve(
    kubeconfig: str | None,
    context: str | None,
    environ: dict[str, str] | None = None,
    home: Path | None = None,
) -> Connection:
    env = dict(os.environ) if environ is None else environ
    if kubeconfig:
        if not Path(kubeconfig).is_file():
            raise UsageError(f"--kubeconfig {kubeconfig}: no such file")
        return _from_files([kubeconfig], context, f"--kubeconfig {kubeconfig}")
    kubeconfig_env = env.get("KUBECONFIG", "")
    paths = [p for p in kubeconfig_env.split(os.pathsep) if p]
    if paths:
        existing = [p for p in paths if Path(p).is_file()]
        if not existing:
            raise UsageError(
                f"KUBECONFIG names no file that exists ({', '.join(paths)}); "
                "fix it or unset it (kubectl does not fall back either)"
            )
        return _from_files(existing, context, f"KUBECONFIG={kubeconfig_env}")
    default = (home or Path.home()) / ".kube" / "config"
    if default.is_file():
        return _from_files([str(default)], context, str(default))
    if env.get("KUBERNETES_SERVICE_HOST") and not context:
        return _in_cluster(env)
    raise UsageError(
        "no cluster configured: pass --kubeconfig, set KUBECONFIG, create ~/.kube/config, "
        "or run in a pod"
    )


def _in_cluster(env: dict[str, str]) -> Connection:
    from kubernetes.client import Configuration
    from kubernetes.config.incluster_config import InClusterConfigLoader

    token_file = str(SERVICE_ACCOUNT_DIR / "token")
    loader = InClusterConfigLoader(  # type: ignore[no-untyped-call]
        token_filename=token_file,
        cert_filename=str(SERVICE_ACCOUNT_DIR / "ca.crt"),
        environ=env,
    )
    probe = Configuration()
    Connection(server="", source="in-cluster", loader=loader.load_and_set).load(probe)
    return Connection(
        server=probe.host,
        source="in-cluster",
        user="the pod's service account",
        ca_file=probe.ssl_ca_cert,
        token_file=token_file,
        loader=loader.load_and_set,
    )


def _from_files(paths: list[str], context: str | None, source: str) -> Connection:
    from kubernetes.config.kube_config import KubeConfigLoader, KubeConfigMerger

    try:
        merger = KubeConfigMerger(os.pathsep.join(paths))  # type: ignore[no-untyped-call]
    except Exception as err:  # yaml, decoding, shape: name the file that fails
        raise UsageError(_unreadable(paths, err)) from err
    # kubectl: the first file that sets current-context wins (the package lets the last win).
    firsts = [merger.config_files[p].get("current-context") for p in merger.paths]
    context_name = context or next((name for name in firsts if name), None)
    if not context_name:
        raise UsageError(f"{source}: no current-context; pass --context")
    config = merger.config
    ctx = _named(config, "contexts", context_name)
    if ctx is None:
        raise UsageError(f"{source}: context {context_name!r} not found")
    cluster_name = (ctx.get("context") or {}).get("cluster")
    user_name = (ctx.get("context") or {}).get("user")
    cluster_node = _named(config, "clusters", cluster_name)
    if cluster_node is None or not (cluster_node.get("cluster") or {}).get("server"):
        raise UsageError(f"{source}: context {context_name!r}: cluster {cluster_name!r} not found")
    cluster = cluster_node["cluster"]
    user_node = _named(config, "users", user_name) if user_name else None
    user: dict[str, Any] = (user_node.get("user") or {}) if user_node else {}
    try:
        loader = KubeConfigLoader(  # type: ignore[no-untyped-call]
            config_dict=config, active_context=context_name, config_base_path=None
        )
    except Exception as err:
        raise UsageError(f"{source}: context {context_name!r}: {err}") from err
    cluster_dir = _folder(cluster_node, paths[0])
    user_dir = _folder(user_node, paths[0]) if user_node else cluster_dir

    def rel(base: Path, value: str | None) -> str | None:
        return str(base / value) if value else None

    import base64

    try:
        cert_data = base64.b64decode(user.get("client-certificate-data") or "")
    except ValueError as err:
        raise UsageError(f"{source}: user {user_name!r}: client-certificate-data: {err}") from err
    return Connection(
        server=str(cluster["server"]).rstrip("/"),
        source=source,
        context=context_name,
        user=user_name,
        ca_file=rel(cluster_dir, cluster.get("certificate-authority")),
        cert_file=rel(user_dir, user.get("client-certificate")),
        key_file=rel(user_dir, user.get("client-key")),
        cert_data=cert_data or None,
        token=user.get("token"),
        # The package reads a tokenFile once and keeps its newline; we read it per request.
        token_file=None if user.get("token") else rel(user_dir, user.get("tokenFile")),
        impersonate=_impersonation(user, source),
        plugin=next((key for key in ("exec", "auth-provider") if user.get(key)), None),
        loader=lambda configuration: _load(loader, configuration, "proxy-url" in cluster),
    )


def _load(loader: Any, configuration: Any, own_proxy: bool) -> None:
    loader.load_and_set(configuration)
    if own_proxy:  # as kubectl: a cluster's proxy-url is used whatever NO_PROXY says
        configuration.no_proxy = None


def _named(config: Any, section: str, name: object) -> Any:
    for entry in config.value.get(section) or []:
        value = entry.value if hasattr(entry, "value") else entry
        if isinstance(value, dict) and value.get("name") == name:
            return value | {"_path": getattr(entry, "path", None)}
    return None


def _folder(node: dict[str, Any], fallback: str) -> Path:
    return Path(node.get("_path") or fallback).resolve().parent


def _impersonation(user: dict[str, Any], source: str) -> tuple[tuple[str, str], ...]:
    headers = [(header, str(user[key])) for key, header in IMPERSONATION.items() if user.get(key)]
    groups = user.get("as-groups") or []
    extra = user.get("as-user-extra") or {}
    if not isinstance(groups, list) or not isinstance(extra, dict):
        raise UsageError(f"{source}: as-groups must be a list and as-user-extra a mapping")
    if (groups or extra) and not headers:
        raise UsageError(f"{source}: as-groups/as-user-extra need `as` (as kubectl requires)")
    headers += [("Impersonate-Group", str(group)) for group in groups]
    for key, values in extra.items():
        for value in values if isinstance(values, list) else [values]:
            headers.append((f"Impersonate-Extra-{key}", str(value)))
    return tuple(headers)


def _unreadable(paths: list[str], err: Exception) -> str:
    """Which kubeconfig cannot be read or parsed, and why (only on the error path)."""
    import yaml

    for path in paths:
        try:
            data = yaml.safe_load(Path(path).read_bytes().decode("utf-8"))
        except UnicodeDecodeError:
            return f"kubeconfig {path}: not UTF-8 text"
        except yaml.YAMLError as problem:
            return f"kubeconfig {path}: not valid YAML: {problem}"
        except OSError as problem:
            return f"kubeconfig {path}: {problem.strerror}"
        if not isinstance(data, dict):
            return f"kubeconfig {path}: not a kubeconfig (a mapping with clusters, users, contexts)"
    return f"kubeconfig {', '.join(paths)}: {err}"
