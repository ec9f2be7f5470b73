"""An in-memory stand-in for the apiserver, for the planning-level sweep over every starting
state (tests/cluster/test_convergence_states.py): thousands of states in seconds, where the real
apiserver manages about one a second. It keeps the semantics the tools rely on (404, 409 on a
resourceVersion or uid precondition and on AlreadyExists, JSON merge patch, server-side dry
run, a Terminating namespace refusing new objects, metadata-only answers, aggregated
discovery); it does not validate schemas. The representative states run on the real
apiserver as well, so nothing here is the only proof of a behaviour."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from common.cluster.client import Kube
from common.cluster.kubeconfig import Connection
from common.cluster.transport import Response
from common.errors import ApiError

SERVER = "https://memory.invalid"

Key = tuple[str, str, str | None, str]  # group, plural, namespace, name

CP_GROUP = "connectivityproxy.sap.com"
CRD_PLURAL = "customresourcedefinitions"
CRD_GROUP = "apiextensions.k8s.io"
# (group, plural) -> version of every kind a standard legacy cluster serves besides the core.
SERVED: dict[tuple[str, str], str] = {
    ("apps", "statefulsets"): "v1",
    ("apps", "deployments"): "v1",
    ("rbac.authorization.k8s.io", "clusterroles"): "v1",
    ("rbac.authorization.k8s.io", "clusterrolebindings"): "v1",
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): "v1",
    ("scheduling.k8s.io", "priorityclasses"): "v1",
    ("networking.istio.io", "envoyfilters"): "v1beta1",
    ("networking.istio.io", "gateways"): "v1beta1",
    ("networking.istio.io", "virtualservices"): "v1beta1",
    ("networking.istio.io", "destinationrules"): "v1beta1",
    ("security.istio.io", "peerauthentications"): "v1beta1",
    ("cert.gardener.cloud", "certificates"): "v1alpha1",
    (CRD_GROUP, CRD_PLURAL): "v1",
}
CLUSTER_SCOPED = {"namespaces", CRD_PLURAL, "clusterroles", "clusterrolebindings"} | {
    "validatingwebhookconfigurations",
    "priorityclasses",
}

JSON = {"content-type": "application/json"}  # as the apiserver answers


def _error(method: str, path: str, status: int, reason: str, message: str) -> ApiError:
    return ApiError(method, path, status, reason, message, {"reason": reason, "message": message})


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def parse(path: str) -> tuple[str, str | None, str, str | None]:
    """(group, namespace, plural, name) of a REST path."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        group, rest = "", parts[2:]
    else:
        group, rest = parts[1], parts[3:]
    if rest[0] == "namespaces" and len(rest) >= 3:
        return group, rest[1], rest[2], rest[3] if len(rest) > 3 else None
    return group, None, rest[0], rest[1] if len(rest) > 1 else None


class MemoryApiserver:
    """Answers common.cluster.client.Kube's requests through its transport hook: the tools'
    own client (retries, error parsing, conveniences) runs unchanged on top of it."""

    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self._versions = itertools.count(1000)
        self._uids = itertools.count(1)
        self.request_count = 0
        self.writes = 0
        # Admission: each rule sees (operation, key, the object as stored or None) and answers
        # the message of a denial, or None; a denial is worded as a ValidatingAdmissionPolicy's.
        self.admission: list[tuple[str, Callable[[str, Key, dict[str, Any] | None], str | None]]]
        self.admission = []

    # -- the store -------------------------------------------------------------------------

    def _served(self, group: str, plural: str) -> bool:
        if group in ("", "authorization.k8s.io") or (group, plural) in SERVED:
            return True
        crd = self.objects.get((CRD_GROUP, CRD_PLURAL, None, f"{plural}.{group}"))
        return crd is not None

    def _stamp(self, obj: dict[str, Any], *, new: bool) -> None:
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(next(self._versions))
        if new:
            meta["uid"] = f"uid-{next(self._uids)}"
            meta["creationTimestamp"] = "2026-11-29T00:00:00Z"
        self.writes += 1

    def _namespace_problem(self, method: str, path: str, namespace: str | None) -> None:
        if namespace is None:
            return
        found = self.objects.get(("", "namespaces", None, namespace))
        if found is None:
            raise _error(method, path, 404, "NotFound", f'namespaces "{namespace}" not found')
        if found["metadata"].get("deletionTimestamp"):
            raise _error(
                method,
                path,
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being "
                "terminated",
            )

    def finalize_namespace(self, name: str) -> None:
        """What the namespace controller does for a Terminating namespace: its contents go,
        then the namespace itself."""
        for key in [k for k in self.objects if k[2] == name]:
            del self.objects[key]
        self.objects.pop(("", "namespaces", None, name), None)

    def _admit(
        self, method: str, path: str, operation: str, key: Key, current: dict[str, Any] | None
    ) -> None:
        for name, rule in self.admission:
            message = rule(operation, key, current)
            if message:
                raise _error(
                    method,
                    path,
                    403,
                    "Forbidden",
                    f"{key[1]} \"{key[3]}\" is forbidden: ValidatingAdmissionPolicy '{name}' "
                    f"with binding '{name}-binding' denied request: {message}",
                )

    @staticmethod
    def _immutable_problem(
        method: str, path: str, current: dict[str, Any], new: dict[str, Any]
    ) -> None:
        """A ConfigMap or Secret made immutable keeps its data (422, as the apiserver says)."""
        if not current.get("immutable"):
            return
        for key in ("data", "binaryData", "immutable"):
            if current.get(key) != new.get(key):
                raise _error(
                    method,
                    path,
                    422,
                    "Invalid",
                    f'ConfigMap "{current["metadata"]["name"]}" is invalid: {key}: Forbidden: '
                    "field is immutable when `immutable` is set",
                )

    # -- Kube's surface ----------------------------------------------------------------------

    def kube(self) -> Kube:
        connection = cast(Connection, SimpleNamespace(server=SERVER, source="memory"))
        return Kube(connection, transport=self.transport, user_agent="cp-migration/memory")

    def transport(
        self, method: str, url: str, headers: dict[str, str], body: Any, timeout: float
    ) -> Response:
        parts = urlsplit(url)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        try:
            answer = self.handle(
                method, unquote(parts.path), query, body, headers.get("Accept", "")
            )
        except ApiError as err:
            data = {"kind": "Status", "reason": err.status_reason, "message": err.api_message}
            return Response(err.status, JSON, json.dumps(data).encode())
        return Response(200, JSON, json.dumps(answer).encode())

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        body: Any,
        accept: str,
    ) -> dict[str, Any]:
        self.request_count += 1
        if path == "/apis":
            return self._discovery()
        group, namespace, plural, name = parse(path)
        dry_run = (query or {}).get("dryRun") == "All"
        if not self._served(group, plural):
            raise _error(method, path, 404, "NotFound", "the server could not find the resource")
        if plural == "selfsubjectrulesreviews":
            rule = {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}
            return {"status": {"resourceRules": [rule], "incomplete": False}}
        if plural == "events":
            return dict(body or {})
        key = (group, plural, namespace, name or "")
        metadata_only = "PartialObjectMetadata" in accept
        if method == "GET" and name is None:
            items = [
                copy.deepcopy(obj)
                for (g, p, ns, _), obj in sorted(self.objects.items(), key=lambda kv: kv[0][3])
                if (g, p) == (group, plural) and (namespace is None or ns == namespace)
            ]
            if metadata_only:
                items = [{"metadata": item["metadata"]} for item in items]
            return {"items": items, "metadata": {}}
        if method == "GET":
            found = self.objects.get(key)
            if found is None:
                raise _error(method, path, 404, "NotFound", f'"{name}" not found')
            return (
                {"metadata": copy.deepcopy(found["metadata"])}
                if metadata_only
                else (copy.deepcopy(found))
            )
        if method == "POST":
            obj = copy.deepcopy(body)
            key = (group, plural, namespace, obj["metadata"]["name"])
            self._namespace_problem(method, path, namespace)
            if key in self.objects:
                raise _error(method, path, 409, "AlreadyExists", "already exists")
            obj["metadata"].pop("resourceVersion", None)
            if namespace:
                obj["metadata"]["namespace"] = namespace
            if not dry_run:
                self._stamp(obj, new=True)
                self.objects[key] = obj
            return copy.deepcopy(obj)
        current = self.objects.get(key)
        if current is None:
            raise _error(method, path, 404, "NotFound", f'"{name}" not found')
        if method == "PUT":
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                raise _error(method, path, 409, "Conflict", "the object has been modified")
            obj = copy.deepcopy(body)
            self._immutable_problem(method, path, current, obj)
            obj["metadata"]["uid"] = current["metadata"]["uid"]
            if not dry_run:
                self._stamp(obj, new=False)
                self.objects[key] = obj
            return copy.deepcopy(obj)
        if method == "PATCH":
            wanted = ((body or {}).get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                raise _error(method, path, 409, "Conflict", "the object has been modified")
            merged = merge_patch(current, body)
            merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            self._immutable_problem(method, path, current, merged)
            if merged != current and not dry_run:
                self._stamp(merged, new=False)
                self.objects[key] = merged
            answer = {"metadata": merged["metadata"]} if metadata_only else merged
            return copy.deepcopy(answer)
        if method == "DELETE":
            preconditions = (body or {}).get("preconditions") or {}
            for field in ("uid", "resourceVersion"):
                if field in preconditions and preconditions[field] != current["metadata"][field]:
                    raise _error(method, path, 409, "Conflict", f"precondition {field} failed")
            self._admit(method, path, "DELETE", key, current)
            if dry_run or (body or {}).get("dryRun") == ["All"]:
                return {}
            if plural == "namespaces":
                current["metadata"]["deletionTimestamp"] = "2026-11-29T00:00:00Z"
                current.setdefault("spec", {})["finalizers"] = ["kubernetes"]
                self._stamp(current, new=False)
            elif plural == CRD_PLURAL:
                del self.objects[key]
                crd_group = str(current["spec"]["group"])
                crd_plural = str(current["spec"]["names"]["plural"])
                for other in [k for k in self.objects if k[:2] == (crd_group, crd_plural)]:
                    del self.objects[other]
            else:
                del self.objects[key]
            self.writes += 1
            return {}
        raise AssertionError(f"unsupported {method} {path}")

    def _discovery(self) -> dict[str, Any]:
        groups: dict[str, list[dict[str, Any]]] = {}
        served = dict(SERVED)
        for (group, plural, _, _), crd in self.objects.items():
            if (group, plural) == (CRD_GROUP, CRD_PLURAL):
                spec = crd["spec"]
                served[(spec["group"], spec["names"]["plural"])] = spec["versions"][0]["name"]
        for (group, plural), version in served.items():
            groups.setdefault(group, []).append(
                {"version": version, "resources": [{"resource": plural}]}
            )
        return {
            "kind": "APIGroupDiscoveryList",
            "items": [
                {"metadata": {"name": group}, "versions": versions}
                for group, versions in groups.items()
            ],
        }

    def versions(self) -> dict[Key, str]:
        return {key: obj["metadata"]["resourceVersion"] for key, obj in self.objects.items()}
