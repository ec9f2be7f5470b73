"""Test-side access to the real control plane: apply manifests, reset state, run the tools."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from common.cluster.client import Kube, resource_path
from common.cluster.kubeconfig import resolve
from common.errors import ApiError

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "hack" / "devenv" / "manifests"
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"
TEST_NAMESPACES = ("kyma-system", "connectivity-proxy-backup", "istio-system")

# Namespaced kinds the tests create, by (group, version, plural).
NAMESPACED: tuple[tuple[str, str, str], ...] = (
    ("connectivityproxy.sap.com", "v1", "connectivityproxies"),
    ("", "v1", "configmaps"),
    ("", "v1", "secrets"),
    ("", "v1", "services"),
    ("", "v1", "serviceaccounts"),
    ("", "v1", "events"),
    ("apps", "v1", "statefulsets"),
    ("apps", "v1", "deployments"),
    ("rbac.authorization.k8s.io", "v1", "roles"),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"),
)
CLUSTER_SCOPED: tuple[tuple[str, str, str], ...] = (
    ("rbac.authorization.k8s.io", "v1", "clusterroles"),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings"),
    ("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations"),
    ("scheduling.k8s.io", "v1", "priorityclasses"),
)
# Cluster-scoped objects a test may leave behind are recognised by name.
OWNED_PREFIXES = ("connectivity-proxy", "webhook-secret", "cp-migration")


def load_manifests(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def plural_of(obj: dict[str, Any]) -> str:
    kind = str(obj["kind"]).lower()
    if kind.endswith("y") and kind[-2:-1] not in ("a", "e", "o", "u"):
        return kind[:-1] + "ies"
    if kind.endswith("s"):
        return kind + "es"
    return kind + "s"


def path_of(obj: dict[str, Any], *, with_name: bool = True) -> str:
    group, _, version = str(obj["apiVersion"]).rpartition("/")
    meta = obj["metadata"]
    return resource_path(
        group,
        version,
        plural_of(obj),
        meta.get("namespace"),
        meta["name"] if with_name else None,
    )


@dataclass(frozen=True)
class ToolResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Cluster:
    def __init__(self, kubeconfig: Path, audit_log: Path | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.audit_log = audit_log
        self.kube = Kube(resolve(str(kubeconfig), None), user_agent="cp-migration-tests")

    # -- objects -------------------------------------------------------------------------

    def apply(self, objects: Iterable[dict[str, Any]]) -> None:
        """Create each object, or replace it when it exists (server-side truth, no merging)."""
        for obj in objects:
            self.ensure_namespace(obj["metadata"].get("namespace"))
            try:
                self.kube.create(path_of(obj, with_name=False), obj)
            except ApiError as err:
                if err.status != 409:
                    raise
                current = self.kube.request("GET", path_of(obj))
                replacement = {
                    **obj,
                    "metadata": {
                        **obj["metadata"],
                        "resourceVersion": current["metadata"]["resourceVersion"],
                    },
                }
                self.kube.replace(path_of(obj), replacement)
            if obj["kind"] == "CustomResourceDefinition":
                self.wait_established(obj["metadata"]["name"])

    def apply_file(self, path: Path) -> list[dict[str, Any]]:
        objects = load_manifests(path)
        self.apply(objects)
        return objects

    def ensure_namespace(self, name: str | None) -> None:
        if not name:
            return
        path = resource_path("", "v1", "namespaces", name=name)
        current = self.kube.get(path)
        if current is not None:
            if current["metadata"].get("deletionTimestamp"):
                self.finalize_namespace(name)
            else:
                return
        try:
            self.kube.create(
                resource_path("", "v1", "namespaces"),
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            )
        except ApiError as err:
            if err.status != 409:
                raise

    def finalize_namespace(self, name: str) -> None:
        """No controller manager runs, so a Terminating namespace is finished by hand."""
        path = resource_path("", "v1", "namespaces", name=name)
        current = self.kube.get(path)
        if current is None:
            return
        current["spec"]["finalizers"] = []
        self.kube.replace(path + "/finalize", current)
        for _ in range(100):
            if self.kube.get(path) is None:
                return
            time.sleep(0.05)

    def wait_established(self, crd_name: str, timeout: float = 30.0) -> None:
        path = resource_path(
            "apiextensions.k8s.io", "v1", "customresourcedefinitions", name=crd_name
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            crd = self.kube.get(path)
            conditions = ((crd or {}).get("status") or {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                # Discovery and the REST mapping follow a moment later.
                group = crd["spec"]["group"] if crd else ""
                version = crd["spec"]["versions"][0]["name"] if crd else ""
                if self.kube.get(f"/apis/{group}/{version}") is not None:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"CRD {crd_name} not established within {timeout}s")

    def delete_crd(self, crd_name: str, timeout: float = 30.0) -> None:
        path = resource_path(
            "apiextensions.k8s.io", "v1", "customresourcedefinitions", name=crd_name
        )
        self.kube.delete(path)
        deadline = time.monotonic() + timeout
        while self.kube.get(path) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {crd_name} not deleted within {timeout}s")
            time.sleep(0.1)

    def get(
        self, group: str, version: str, plural: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        return self.kube.get(resource_path(group, version, plural, namespace, name))

    def configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get("", "v1", "configmaps", namespace, name)

    def cr(self) -> dict[str, Any] | None:
        return self.get(
            "connectivityproxy.sap.com",
            "v1",
            "connectivityproxies",
            "kyma-system",
            "connectivity-proxy",
        )

    def served(self, group: str, version: str) -> set[str]:
        found = self.kube.get(f"/apis/{group}/{version}" if group else f"/api/{version}")
        return {r["name"] for r in (found or {}).get("resources", [])}

    def reset(self) -> None:
        """Remove everything the tests create, object by object (no namespace deletion:
        without a controller manager a namespace never finishes deleting)."""
        for namespace in TEST_NAMESPACES:
            ns = self.kube.get(resource_path("", "v1", "namespaces", name=namespace))
            if ns is not None and ns["metadata"].get("deletionTimestamp"):
                self.finalize_namespace(namespace)
        for group, version, plural in NAMESPACED + self._extra_namespaced():
            for namespace in TEST_NAMESPACES:
                self._delete_all(resource_path(group, version, plural, namespace))
        for group, version, plural in CLUSTER_SCOPED:
            self._delete_all(resource_path(group, version, plural), OWNED_PREFIXES)
        # ServiceMappings (cluster-scoped, as in the legacy CRD) have any name: all of them go.
        if "servicemappings" in self.served("connectivityproxy.sap.com", "v1"):
            self._delete_all(resource_path("connectivityproxy.sap.com", "v1", "servicemappings"))

    def _extra_namespaced(self) -> tuple[tuple[str, str, str], ...]:
        extra = []
        for group, version, plural in (
            ("networking.istio.io", "v1beta1", "gateways"),
            ("networking.istio.io", "v1beta1", "virtualservices"),
            ("networking.istio.io", "v1beta1", "destinationrules"),
            ("networking.istio.io", "v1beta1", "envoyfilters"),
            ("security.istio.io", "v1beta1", "peerauthentications"),
            ("cert.gardener.cloud", "v1alpha1", "certificates"),
            ("gateway.networking.k8s.io", "v1", "gateways"),
        ):
            if plural in self.served(group, version):
                extra.append((group, version, plural))
        return tuple(extra)

    def _delete_all(self, collection: str, prefixes: tuple[str, ...] | None = None) -> None:
        try:
            items = list(self.kube.list(collection))
        except ApiError as err:
            if err.status == 404:
                return
            raise
        for item in items:
            name = item["metadata"]["name"]
            if prefixes is not None and not name.startswith(prefixes):
                continue
            if name == "default" and collection.endswith("/serviceaccounts"):
                continue
            if name == "kube-root-ca.crt":
                continue
            self.kube.delete(f"{collection}/{name}")

    # -- identities ------------------------------------------------------------------------

    def mint_token(self, namespace: str, name: str, seconds: int = 3600) -> str:
        """A ServiceAccount token from the real apiserver (TokenRequest API)."""
        answer = self.kube.request(
            "POST",
            resource_path("", "v1", "serviceaccounts", namespace, name, "token"),
            body={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds},
            },
            retry_safe=True,
        )
        return str(answer["status"]["token"])

    def token_kubeconfig(self, namespace: str, name: str, path: Path, seconds: int = 3600) -> Path:
        """A kubeconfig for a ServiceAccount: this cluster's server and CA, and a minted token."""
        admin = json.loads(self.kubeconfig.read_text())
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": admin["clusters"][0]["cluster"]}],
            "users": [{"name": name, "user": {"token": self.mint_token(namespace, name, seconds)}}],
            "contexts": [{"name": name, "context": {"cluster": "test", "user": name}}],
            "current-context": name,
        }
        path.write_text(json.dumps(config))
        return path

    # -- running the tools -----------------------------------------------------------------

    def run(
        self,
        entry: str,
        *args: str,
        env: dict[str, str] | None = None,
        kubeconfig: Path | None = None,
    ) -> ToolResult:
        """Run a console script's click command in-process (fast) against this cluster, as the
        admin or, with `kubeconfig`, as another identity (a ServiceAccount's token)."""
        module_name, _, attribute = entry.partition(":")
        module = __import__(module_name, fromlist=[attribute])
        command = getattr(module, attribute)
        runner = CliRunner()
        result = runner.invoke(
            command,
            ["--kubeconfig", str(kubeconfig or self.kubeconfig), "--log-format", "text", *args],
            env=env,
            catch_exceptions=False,
        )
        return ToolResult(result.exit_code, result.stdout, result.stderr)

    def run_process(
        self, module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> ToolResult:
        """Run a tool as its own process (`python -m module`), as an init container would."""
        completed = subprocess.run(
            [sys.executable, "-m", module, "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            cwd=REPO,
        )
        return ToolResult(completed.returncode, completed.stdout, completed.stderr)


class AuditWindow:
    """The apiserver's audit events from the moment this window opens."""

    def __init__(self, cluster: Cluster) -> None:
        self.path = cluster.audit_log
        self.offset = self.path.stat().st_size if self.path and self.path.exists() else 0

    @property
    def available(self) -> bool:
        return self.path is not None and self.path.exists()

    def events(self) -> list[dict[str, Any]]:
        if self.path is None or not self.path.exists():
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            lines = handle.read().splitlines()
        return [json.loads(line) for line in lines if line.strip()]
