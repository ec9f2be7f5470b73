"""Where the cluster is and who we are, in kubectl's order of precedence:

1. ``--kubeconfig`` (and ``--context``);
2. the ``KUBECONFIG`` list: missing files are skipped, but a list none of whose files exists is
   an error (never a fall-back to another cluster); entries merge first-wins, as in kubectl;
3. ``~/.kube/config``;
4. in-cluster (``KUBERNETES_SERVICE_HOST``).

``kubernetes.config`` reads the files and loads credentials, TLS and proxies, and never writes a
kubeconfig back. Added here is only what it lacks: kubectl's rule that the first file's
``current-context`` wins, a ``tokenFile`` read for every request (tokens rotate), impersonation,
and errors that name the file; and where the package reads a kubeconfig otherwise than kubectl:
relative paths, booleans, empty files (common.cluster.kubeconfig_rules), exec plugins (run by
common.cluster.execplugin when the transport is built, not by the package) and decoded -data
key material (kept in memory, common.cluster.keymaterial).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.cluster import keymaterial, kubeconfig_rules
from common.errors import RetryableError, UsageError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# A kubeconfig user's impersonation fields, and the headers kubectl sends for them.
IMPERSONATION = {"as": "Impersonate-User", "as-uid": "Impersonate-Uid"}
# The package refreshes a gcp auth-provider token only with google-auth, which we do not ship.
GCP_REFRESH = (
    "its gcp auth-provider access-token is missing or expired and could not be refreshed "
    "({err}); use the exec plugin gke-gcloud-auth-plugin instead, as kubectl does since 1.26 "
    "(`gcloud container clusters get-credentials` writes it)"
)
NO_GOOGLE_AUTH = "the package needs google-auth for it, which is not installed"


@dataclass(frozen=True)
class Connection:
    """One apiserver and one identity: what to log, and how to configure the client."""

    server: str
    source: str
    context: str | None = None
    user: str | None = None
    token_file: str | None = None  # read for every request
    impersonate: tuple[tuple[str, str], ...] = ()  # (Impersonate-* header, value)
    plugin: str | None = None  # "exec" or "auth-provider NAME": a plugin gives credentials
    proxy_url: str | None = None  # the cluster's own proxy-url (environment proxies aside)
    # The user's exec plugin (common.cluster.execplugin.ExecPlugin), run by us, not the package.
    exec_plugin: Any = field(default=None, repr=False, compare=False)
    # Fills a kubernetes.client.Configuration: host, TLS, credentials, proxy.
    loader: Callable[[Any], None] | None = field(default=None, repr=False, compare=False)

    def describe(self) -> str:
        parts = [self.server]
        parts += [f"context {self.context}"] if self.context else []
        parts += [f"user {self.user}"] if self.user else []
        labels = {"Impersonate-User": "", "Impersonate-Uid": "uid ", "Impersonate-Group": "group "}
        acting = [
            labels.get(h, h.removeprefix("Impersonate-") + " ") + v for h, v in self.impersonate
        ]
        parts += ["as " + ", ".join(acting)] if acting else []
        return ", ".join(parts) + f" (from {self.source})"

    def load(self, configuration: Any) -> None:
        """Fill a kubernetes.client.Configuration; errors name the cause and the source."""
        configuration.host = self.server
        try:
            if self.loader is not None:
                self.loader(configuration)
        except Exception as err:  # the package's, a file's, or a plugin's: name the user
            cause: object = err
            if self.plugin == "auth-provider gcp":  # google-auth missing: no credentials object
                cause = GCP_REFRESH.format(
                    err=NO_GOOGLE_AUTH if type(err) is AttributeError else err
                )
            whose = f"user {self.user}'s credentials" if self.user else "credentials"
            raise UsageError(
                f"{self.source}: cannot load the cluster's certificates or the {whose}: {cause}"
            ) from err


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
        if Path(kubeconfig).is_dir():
            raise UsageError(f"--kubeconfig {kubeconfig}: a directory, not a kubeconfig file")
        if not Path(kubeconfig).is_file():
            raise UsageError(f"--kubeconfig {kubeconfig}: no such file")
        return _from_files([kubeconfig], context, f"--kubeconfig {kubeconfig}")
    listed = [p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        existing, empty = kubeconfig_rules.usable_files(listed)
        if not existing:
            what = "only empty files" if empty else "no file that exists"
            raise UsageError(
                f"KUBECONFIG names {what} ({', '.join(listed)}); "
                "fix it or unset it (kubectl does not fall back either)"
            )
        return _from_files(existing, context, f"KUBECONFIG={env['KUBECONFIG']}")
    default = kubeconfig_rules.home_file(env, home)
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
        token_file=token_file,
        loader=loader.load_and_set,
    )


def _from_files(paths: list[str], context: str | None, source: str) -> Connection:
    from kubernetes.config.kube_config import KubeConfigLoader, KubeConfigMerger

    try:
        merger = KubeConfigMerger(os.pathsep.join(paths))  # type: ignore[no-untyped-call]
        for path in merger.paths:
            kubeconfig_rules.check_types(path, merger.config_files[path])
        currents = [merger.config_files[p].get("current-context") for p in merger.paths]
        name = context or next((current for current in currents if current), None)
        if not name:
            raise UsageError(f"{source}: no current-context; pass --context")
        config = merger.config
        found = config["contexts"].get_with_name(name, safe=True)
        if found is None:
            raise UsageError(f"{source}: context {name!r} not found")
        wanted = found.safe_get("context") or {}
        cluster_name, user_name = wanted.get("cluster"), wanted.get("user")
        cluster = config["clusters"].get_with_name(cluster_name, safe=True)
        if cluster is None:
            raise UsageError(f"{source}: context {name!r}: cluster {cluster_name!r} not found")
        if not cluster["cluster"].safe_get("server"):
            raise UsageError(f"{source}: cluster {cluster_name!r} has no server")
        user_node = config["users"].get_with_name(user_name, safe=True) if user_name else None
        if user_name and user_node is None:  # kubectl would prompt; we must not go anonymous
            raise UsageError(f"{source}: context {name!r}: user {user_name!r} not found")
        user = user_node["user"] if user_node else None
        # As kubectl: each entry's relative paths against its own file (in memory only).
        kubeconfig_rules.check_cluster(cluster.path, str(cluster_name), cluster["cluster"].value)
        kubeconfig_rules.anchor_cluster(cluster.path, cluster["cluster"].value)
        if user is not None:
            kubeconfig_rules.anchor_user(user.path, user.value)
        # Decoded keys and certificates in memory only, never in a temp file.
        where = f"kubeconfig {cluster.path}: cluster {cluster_name!r}"
        keymaterial.in_memory(cluster["cluster"].value, keymaterial.CLUSTER_DATA, where)
        if user is not None:
            where = f"kubeconfig {user.path}: user {user_name!r}"
            keymaterial.in_memory(user.value, keymaterial.USER_DATA, where)
        loader = KubeConfigLoader(  # type: ignore[no-untyped-call]
            config_dict=config, active_context=name, config_base_path=None
        )
    except UsageError:
        raise
    except Exception as err:  # yaml, decoding, shape: name the file that fails
        raise UsageError(_unreadable(paths, source, err)) from err
    fields: dict[str, Any] = dict(user.value) if user else {}
    token_file = fields.get("tokenFile") if not fields.get("token") else None
    if token_file:  # relative to the file that names it, as the package and kubectl read it
        token_file = str(
            Path(getattr(user, "path", None) or paths[0]).resolve().parent / token_file
        )
    own_proxy = "proxy-url" in cluster["cluster"].value
    exec_plugin = None
    if user is not None and fields.get("exec") and not _other_credentials(fields):
        from common.cluster.execplugin import ExecPlugin

        spec = fields["exec"]
        if not isinstance(spec, dict):
            raise UsageError(f"{source}: user {user_name!r}: exec must be a mapping")
        exec_plugin = ExecPlugin(spec, user_name, dict(cluster["cluster"].value), source)
        user.value.pop("exec")  # in memory only: the package must not run it as well

    def load(configuration: Any) -> None:
        loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
        if own_proxy:  # as kubectl: a cluster's proxy-url is used whatever NO_PROXY says
            configuration.no_proxy = None

    return Connection(
        server=str(cluster["cluster"]["server"]).rstrip("/"),
        source=source,
        context=name,
        user=user_name,
        token_file=token_file,
        impersonate=_impersonation(fields, source),
        plugin=_plugin(fields),
        proxy_url=cluster["cluster"].value.get("proxy-url") or None,
        exec_plugin=exec_plugin,
        loader=load,
    )


def _other_credentials(user: dict[str, Any]) -> bool:
    """Credentials the package takes before an exec plugin's (its order, and kubectl's)."""
    return bool(user.get("token") or user.get("tokenFile") or user.get("auth-provider"))


def _plugin(user: dict[str, Any]) -> str | None:
    """ "exec", or "auth-provider NAME", when a plugin supplies the user's credentials."""
    if user.get("exec"):
        return "exec"
    provider = user.get("auth-provider")
    return f"auth-provider {provider.get('name')}" if isinstance(provider, dict) else None


def _impersonation(user: dict[str, Any], source: str) -> tuple[tuple[str, str], ...]:
    headers = [(header, str(user[key])) for key, header in IMPERSONATION.items() if user.get(key)]
    groups, extra = user.get("as-groups") or [], user.get("as-user-extra") or {}
    if not isinstance(groups, list) or not isinstance(extra, dict):
        raise UsageError(f"{source}: as-groups must be a list and as-user-extra a mapping")
    if (groups or extra) and not headers:
        raise UsageError(f"{source}: as-groups/as-user-extra need `as` (as kubectl requires)")
    headers += [("Impersonate-Group", str(group)) for group in groups]
    for key, values in extra.items():
        for value in values if isinstance(values, list) else [values]:
            headers.append((f"Impersonate-Extra-{key}", str(value)))
    return tuple(headers)


def _unreadable(paths: list[str], source: str, err: Exception) -> str:
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
    return f"{source}: {err}"
