"""deploy/rbac.yaml, step by step: each step's roles, their single grants (verb x resource x
name), a ServiceAccount per step bound to nothing but that step's roles, and a lab that brings
the cluster into the state each step starts from, cheaply, again and again.

RBAC in the apiserver follows role changes through an informer: after each change the lab
asks the apiserver (SelfSubjectAccessReview, as the step's ServiceAccount) until the answer
reflects it, instead of sleeping."""

from __future__ import annotations

import contextlib
import copy
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import kyma, record
from common.cluster.client import Kube, resource_path
from common.cluster.kubeconfig import resolve
from common.cr import CR_PATH
from hack.devenv import legacy
from hack.devenv.cluster import FIXTURES, REPO, Cluster, ToolResult, load_manifests
from tests.support import chain
from tests.support.cleaning import wait_discovery

DEPLOY_RBAC = REPO / "deploy" / "rbac.yaml"
DEPLOY_NAMESPACE = REPO / "deploy" / "namespace.yaml"
CP_CRD = FIXTURES / "crd-connectivityproxy.yaml"
THIRD_PARTY = FIXTURES / "crds-third-party.yaml"
STEPS = {"migrator": chain.MIGRATOR, "backup": chain.BACKUP, "cleaner": chain.CLEANER}
# The test ServiceAccounts live outside the namespaces Cluster.reset() empties, so that their
# tokens stay valid while the installation around them is rebuilt.
SA_NAMESPACE = "cp-migration-rbac-tests"
ROLE_KINDS = ("Role", "ClusterRole")
BINDING_KIND = {"Role": "RoleBinding", "ClusterRole": "ClusterRoleBinding"}

STANDARD = "standard"
SHARED_TENANT_MODE = "shared-tenant-mode"
STALE_BACKUP = "stale-backup"
CR_ABSENT = "cr-absent"
RECREATED_CR = "recreated-cr"
IMMUTABLE_BACKUP = "immutable-backup"
CR_EDITED = "cr-edited"
# A step that refuses (exit 3), after a run that refused the same way: its Warning Event is
# read and its count patched (README "Fleet view").
BLOCKED = "blocked"
# Grants that the standard chain does not use, and the state whose path uses them, keyed by
# (step, verb, resource) or, where one name of a rule is the exception, with that name too.
SCENARIOS: dict[tuple[str, ...], str] = {
    # The service-key Secret is looked up only in shared tenant mode.
    ("migrator", "get", "secrets"): SHARED_TENANT_MODE,
    # The backups are read when no legacy installation runs: a CR created again after the
    # migration is migrated from them.
    ("migrator", "get", "configmaps"): RECREATED_CR,
    # A backup that an earlier run left, and that no longer matches its source, is updated.
    ("backup", "update", "configmaps"): STALE_BACKUP,
    # A stale backup a person made immutable is replaced: deleted, then created again.
    ("backup", "delete", "configmaps"): IMMUTABLE_BACKUP,
    # A person set values in the CR before the migration: the migrator keeps them first.
    ("migrator", "create", "configmaps"): CR_EDITED,
    ("migrator", "get", "configmaps", kyma.CR_VALUES_CONFIGMAP): CR_EDITED,
    # The ConnectivityProxy CRD is read only to tell "no CRD" from "no CR" when the CR is absent.
    ("backup", "get", "customresourcedefinitions"): CR_ABSENT,
    (
        "cleaner",
        "get",
        "customresourcedefinitions",
        kyma.CRD_NAME,
    ): CR_ABSENT,
    **{
        (step, verb, "events", record.event_name(step)): BLOCKED
        for step in ("migrator", "backup", "cleaner")
        for verb in ("get", "patch")
    },
}
# Writes whose Event is best effort: without `create events` the step still succeeds, and what
# is lost is the Event itself (which tests/cluster/test_rbac_steps.py expects).
BEST_EFFORT = {("create", "events")}
# The Warning Event's repeats: without them the refused run is refused all the same, and what
# is lost is the Event's count.
WARNING_EVENT = {("get", "events"), ("patch", "events")}


# -- the manifests ---------------------------------------------------------------------------


def rbac_documents() -> list[dict[str, Any]]:
    return load_manifests(DEPLOY_RBAC)


def step_roles(step: str) -> list[dict[str, Any]]:
    """The step's ClusterRole and Roles from deploy/, in file order."""
    return [
        doc
        for doc in rbac_documents()
        if doc["kind"] in ROLE_KINDS and doc["metadata"]["name"] == f"cp-migration-{step}"
    ]


def where(role: dict[str, Any]) -> str:
    """`ClusterRole`, or `Role-<namespace>`: which of a step's roles."""
    namespace = role["metadata"].get("namespace")
    return f"Role-{namespace}" if namespace else "ClusterRole"


@dataclass(frozen=True)
class Grant:
    """One verb on one resource (and one name, when the rule names them) of one rule."""

    step: str
    role: str  # where(role)
    namespace: str | None  # the Role's; None for the ClusterRole
    rule: int
    group: str
    verb: str
    resource: str
    name: str | None

    @property
    def scenario(self) -> str:
        keys: list[tuple[str, ...]] = [(self.step, self.verb, self.resource)]
        if self.name:
            keys.insert(0, (self.step, self.verb, self.resource, self.name))
        return next((SCENARIOS[key] for key in keys if key in SCENARIOS), STANDARD)

    @property
    def best_effort(self) -> bool:
        return (self.verb, self.resource) in BEST_EFFORT

    @property
    def warning_event(self) -> bool:
        return (self.verb, self.resource) in WARNING_EVENT

    @property
    def id(self) -> str:
        found = f"{self.step}/{self.role}/rule{self.rule}-{self.verb}-{self.resource}"
        if self.name:
            found += f"-{self.name}"
        if self.scenario != STANDARD:
            found += f"@{self.scenario}"
        return found


def grants(step: str) -> list[Grant]:
    found = []
    for role in step_roles(step):
        for index, rule in enumerate(role["rules"]):
            (group,) = rule["apiGroups"]  # one group a rule keeps each grant readable
            names: list[str | None] = list(rule.get("resourceNames") or [None])
            for verb, resource, name in itertools.product(rule["verbs"], rule["resources"], names):
                found.append(
                    Grant(
                        step,
                        where(role),
                        role["metadata"].get("namespace"),
                        index,
                        group,
                        verb,
                        resource,
                        name,
                    )
                )
    return found


def without(role: dict[str, Any], grant: Grant) -> dict[str, Any]:
    """The role minus exactly one grant: its rule is split into what remains of it."""
    reduced = copy.deepcopy(role)
    rules: list[dict[str, Any]] = []
    for index, rule in enumerate(role["rules"]):
        if index != grant.rule:
            rules.append(rule)
            continue
        names = rule.get("resourceNames")
        for verb, resource in itertools.product(rule["verbs"], rule["resources"]):
            piece: dict[str, Any] = {
                "apiGroups": rule["apiGroups"],
                "resources": [resource],
                "verbs": [verb],
            }
            ours = (verb, resource) == (grant.verb, grant.resource)
            if names:
                kept = [n for n in names if not (ours and n == grant.name)]
                if not kept:  # no names left: an empty list would mean every name
                    continue
                piece["resourceNames"] = kept
            elif ours:
                continue
            rules.append(piece)
    reduced["rules"] = rules
    return reduced


# -- identities ------------------------------------------------------------------------------


def service_account_name(step: str) -> str:
    return f"cp-migration-test-{step}"


def bindings(step: str) -> list[dict[str, Any]]:
    """The step's roles bound to the step's own test ServiceAccount, and to nothing else."""
    found = []
    for role in step_roles(step):
        metadata = {"name": service_account_name(step)}
        if role["metadata"].get("namespace"):
            metadata["namespace"] = role["metadata"]["namespace"]
        found.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": BINDING_KIND[role["kind"]],
                "metadata": metadata,
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": role["kind"],
                    "name": role["metadata"]["name"],
                },
                "subjects": [
                    {
                        "kind": "ServiceAccount",
                        "name": service_account_name(step),
                        "namespace": SA_NAMESPACE,
                    }
                ],
            }
        )
    return found


def token_kubeconfig(cluster: Cluster, step: str, folder: Path) -> Path:
    """A kubeconfig for the step's ServiceAccount, with a token minted by the apiserver."""
    return cluster.token_kubeconfig(
        SA_NAMESPACE, service_account_name(step), folder / f"kubeconfig-{step}"
    )


def allowed(kube: Kube, grant: Grant) -> bool:
    """Does the apiserver let this identity make the grant's request (SelfSubjectAccessReview)?"""
    attributes = {"verb": grant.verb, "group": grant.group, "resource": grant.resource}
    if grant.namespace:
        attributes["namespace"] = grant.namespace
    if grant.name:
        attributes["name"] = grant.name
    answer = kube.request(
        "POST",
        resource_path("authorization.k8s.io", "v1", "selfsubjectaccessreviews"),
        body={
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        },
        retry_safe=True,
    )
    return bool(answer["status"].get("allowed"))


def wait_for(kube: Kube, grants_: list[Grant], *, allowed_: bool, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    pending = list(grants_)
    while pending:
        pending = [g for g in pending if allowed(kube, g) != allowed_]
        if not pending:
            return
        if time.monotonic() > deadline:
            state = "allowed" if allowed_ else "denied"
            raise TimeoutError(
                f"RBAC does not show as {state} within {timeout}s: "
                + ", ".join(g.id for g in pending)
                + ("" if allowed_ else " (does another rule grant it too?)")
            )
        time.sleep(0.02)


# -- the lab ---------------------------------------------------------------------------------


def _stripped(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as one would write it again: without what the apiserver sets."""
    found = copy.deepcopy(obj)
    found.pop("status", None)
    meta = found["metadata"]
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
        meta.pop(key, None)
    return found


SERVICE_KEY_SECRET = legacy.service_key_secret(service_key="not-a-real-key")


class Lab:
    """One standard legacy installation (Istio and cert objects, ServiceMappings) reused for
    every run: before each, only what the previous run may have changed is put back. The state
    each step starts from: the installation (migrator), + migrated (backup), + backed up
    (cleaner), as produced by the earlier steps run as the admin."""

    def __init__(self, cluster: Cluster, folder: Path) -> None:
        self.cluster = cluster
        self.folder = folder
        self.kubeconfigs: dict[str, Path] = {}
        self.kubes: dict[str, Kube] = {}
        self.legacy_intact = False  # every legacy object present (no cleaner has run)
        self.ready_for_cleaner = False  # migrated and backed up, backups matching the sources
        self.migrated_cr: dict[str, Any] | None = None
        self.stale_backups: list[dict[str, Any]] | None = None
        self.taken_cr: dict[str, Any] | None = None  # the CR a CR_ABSENT scenario removed

    # -- identities and roles

    def start(self) -> None:
        self.cluster.ensure_namespace(SA_NAMESPACE)
        for step in STEPS:
            self.cluster.apply(
                [
                    {
                        "apiVersion": "v1",
                        "kind": "ServiceAccount",
                        "metadata": {"name": service_account_name(step), "namespace": SA_NAMESPACE},
                    }
                ]
            )
            path = token_kubeconfig(self.cluster, step, self.folder)
            self.kubeconfigs[step] = path
            self.kubes[step] = Kube(resolve(str(path), None), user_agent="cp-migration-tests")

    def apply_rbac(self) -> None:
        """deploy/'s namespace and every step's roles, each bound to its step's test account."""
        self.cluster.apply(load_manifests(DEPLOY_NAMESPACE))
        for step in STEPS:
            self.cluster.apply([*step_roles(step), *bindings(step)])
        for step in STEPS:
            wait_for(self.kubes[step], grants(step), allowed_=True)

    @contextlib.contextmanager
    def without(self, grant: Grant) -> Iterator[None]:
        """The step's role minus the one grant, in effect for the duration."""
        (role,) = [r for r in step_roles(grant.step) if where(r) == grant.role]
        self.cluster.apply([without(role, grant)])
        kube = self.kubes[grant.step]
        try:
            wait_for(kube, [grant], allowed_=False)
            # What remains of the rule still holds (the split lost no other piece of it).
            same_rule = [
                g
                for g in grants(grant.step)
                if (g.role, g.rule) == (grant.role, grant.rule) and g != grant
            ]
            wait_for(kube, same_rule, allowed_=True)
            yield
        finally:
            self.cluster.apply([role])
            wait_for(kube, [grant], allowed_=True)

    def run(self, step: str, *, as_admin: bool = False) -> ToolResult:
        return self.cluster.run(
            STEPS[step].entry,
            env=chain.FAST_RETRIES,
            kubeconfig=None if as_admin else self.kubeconfigs[step],
        )

    # -- states

    def reinstall(self) -> None:
        self.cluster.apply_file(CP_CRD)
        legacy.fresh_install(self.cluster)
        crds = load_manifests(THIRD_PARTY)
        wait_discovery(
            self.cluster,
            {(crd["spec"]["group"], crd["spec"]["names"]["plural"]) for crd in crds},
            served=True,
        )
        self.cluster.apply([legacy.service_mapping("hr-backend")])  # a third ServiceMapping
        self.apply_rbac()  # reset() removed the roles and bindings
        self.legacy_intact = True
        self.ready_for_cleaner = False
        self.migrated_cr = None
        self.stale_backups = None

    def _user_configuration(self, config_text: str | None = None) -> None:
        """The legacy ConfigMaps, StatefulSet and the module's default CR as installed."""
        self.cluster.apply(
            [
                legacy.legacy_statefulset(),
                legacy.legacy_configmap(config_text),
                legacy.legacy_info(),
                legacy.default_cr(),
            ]
        )

    def _admin_step(self, step: str, expected: int = 0) -> None:
        result = self.run(step, as_admin=True)
        assert result.exit_code == expected, f"{step} as the admin: {result.output}"

    def _delete_backups(self) -> None:
        for name in kyma.SOURCES:
            self.cluster.kube.delete(
                resource_path("", "v1", "configmaps", kyma.BACKUP_NAMESPACE, name)
            )

    def _delete_cr(self) -> None:
        self.cluster.kube.delete(CR_PATH)
        while self.cluster.cr() is not None:  # no finalizers; gone a moment later
            time.sleep(0.02)

    def prepare(self, step: str, scenario: str = STANDARD) -> None:
        """The state `step` starts from in `scenario`."""
        if not self.legacy_intact:
            self.reinstall()
        if step == "migrator":
            self.ready_for_cleaner = False
            shared = scenario == SHARED_TENANT_MODE
            self._user_configuration(legacy.shared_mode_config() if shared else None)
            if shared:
                self.cluster.apply([copy.deepcopy(SERVICE_KEY_SECRET)])
            if scenario == CR_EDITED:
                self.cluster.kube.delete(
                    resource_path(
                        "", "v1", "configmaps", kyma.BACKUP_NAMESPACE, kyma.CR_VALUES_CONFIGMAP
                    )
                )
                self.cluster.kube.merge_patch(
                    CR_PATH,
                    {"spec": {"config": {"highAvailabilityMode": "subdomain"}}},
                    retry_safe=True,
                )
            if scenario == BLOCKED:
                # Shared tenant mode without its service-key Secret, refused once already.
                self._user_configuration(legacy.shared_mode_config())
                for name in ("connectivity-service-service-key", "connectivity-proxy-service-key"):
                    self.cluster.kube.delete(
                        resource_path("", "v1", "secrets", kyma.NAMESPACE, name)
                    )
                self._admin_step("migrator", expected=3)
            if scenario == RECREATED_CR:
                # The chain ran, its cleaner removed the configuration and the installation,
                # then the module was disabled and enabled again: a new default CR.
                self._admin_step("migrator")
                self._delete_backups()
                self._admin_step("backup")
                for path in (
                    resource_path(
                        "apps", "v1", "statefulsets", "kyma-system", "connectivity-proxy"
                    ),
                    *(
                        resource_path("", "v1", "configmaps", "kyma-system", name)
                        for name in kyma.SOURCES
                    ),
                ):
                    self.cluster.kube.delete(path)
                self._delete_cr()
                self.cluster.apply([legacy.default_cr()])
        elif step == "backup":
            self.ready_for_cleaner = False
            if self.migrated_cr is None:
                self._user_configuration()
                self._admin_step("migrator")
                migrated = self.cluster.cr()
                assert migrated is not None
                self.migrated_cr = _stripped(migrated)
            self._user_configuration()
            self.cluster.apply([copy.deepcopy(self.migrated_cr)])
            self._delete_backups()
            if scenario == STALE_BACKUP:
                self.cluster.apply(copy.deepcopy(self._stale_backups()))
            elif scenario == IMMUTABLE_BACKUP:
                self.cluster.apply(
                    [{**stale, "immutable": True} for stale in copy.deepcopy(self._stale_backups())]
                )
            elif scenario == BLOCKED:
                # The configuration changed after the migration, refused once already.
                text = legacy.legacy_configmap()["data"][kyma.CONFIG_KEY]
                self.cluster.apply([legacy.legacy_configmap(f"{text}\n# edited\n")])
                self._admin_step("backup", expected=3)
            elif scenario == CR_ABSENT:
                self.taken_cr = copy.deepcopy(self.migrated_cr)
                self._delete_cr()
        elif step == "cleaner":
            if not self.ready_for_cleaner:
                self._user_configuration()
                self._admin_step("migrator")
                self._delete_backups()
                self._admin_step("backup")
                self.ready_for_cleaner = True
            if scenario == CR_ABSENT:
                current = self.cluster.cr()
                assert current is not None
                self.taken_cr = _stripped(current)
                self._delete_cr()
            elif scenario == BLOCKED:
                # Migrated, not backed up (its mark removed), refused once already.
                self._mark_backed_up(None)
                self._admin_step("cleaner", expected=3)
        else:
            raise ValueError(step)

    def _mark_backed_up(self, value: str | None) -> None:
        self.cluster.kube.merge_patch(
            CR_PATH,
            {"metadata": {"annotations": {kyma.ANNOTATION_BACKED_UP: value}}},
            retry_safe=True,
        )

    def restore(self, scenario: str) -> None:
        """Put back what a scenario took away (the CR)."""
        if scenario == CR_ABSENT and self.taken_cr is not None:
            self.cluster.apply([self.taken_cr])
            self.taken_cr = None
        if scenario == BLOCKED and self.ready_for_cleaner:
            self._mark_backed_up("true")

    def _stale_backups(self) -> list[dict[str, Any]]:
        """Backups an earlier cp-backup made of a configuration that has changed since."""
        if self.stale_backups is None:
            self._admin_step("backup")
            found = []
            for name in kyma.SOURCES:
                backup = self.cluster.configmap(kyma.BACKUP_NAMESPACE, name)
                assert backup is not None
                stale = _stripped(backup)
                stale["data"] = {key: f"{value}\n# earlier" for key, value in stale["data"].items()}
                found.append(stale)
            self.stale_backups = found
            assert self.migrated_cr is not None
            self.cluster.apply([copy.deepcopy(self.migrated_cr)])  # unmark it again
            self._delete_backups()
        return self.stale_backups

    def versions(self) -> dict[str, str]:
        """Every object's resourceVersion, the ServiceMapping CRD's too: equal before and after
        a run proves that the run wrote nothing."""
        # The roles the test itself changes (and their bindings) are not the run's doing.
        found = {
            key: version
            for key, version in chain.resource_versions(self.cluster).items()
            if "/cp-migration-" not in key
        }
        crd = self.cluster.get(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            None,
            legacy.SERVICE_MAPPINGS_CRD,
        )
        found["crd/servicemappings"] = crd["metadata"]["resourceVersion"] if crd else "-"
        return found
