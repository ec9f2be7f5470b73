"""Starting states of a cluster, built the way real systems leave them, and the checks that
the chain converges from each (issue 11: every starting state, no silent loss).

A state is a history plus what happened after it:
- `history`: which tools ran before, ours or the original ones (the Go migrator, backup.sh,
  cleaner.sh), each reproduced by what it does to the cluster;
- `cr`: the module kept its CR, created it again (disabled and enabled), deleted it, or the
  CRD is gone too;
- `sts`: the legacy StatefulSet is gone, or there (the Kyma reconciler installs it again with
  its annotation), or there without that annotation;
- `configmaps`: which legacy ConfigMaps exist (the reconciler puts back what it installs; a
  person may edit the configuration or delete one);
- `backups`: as the history left them, deleted, ours but edited by a person, copies another
  tool made, or the backup namespace deleted and held by its finalizer (Terminating);
- `mappings`: the ServiceMapping CRD (and one ServiceMapping) is there or not.

The same builders run on the real apiserver (hack/devenv/cluster.Cluster) and on the
in-memory one (tests/support/memory_apiserver), through `Env`.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml

from backup import core as backup_core
from backup import plan as backup_plan
from cleaner import core as cleaner_core
from common import backups, kyma
from common.cluster.client import Kube, resource_path
from common.cr import CR_PATH, annotations_of
from common.errors import ApiError, CpError
from hack.devenv import legacy
from hack.devenv.cluster import FIXTURES, Cluster, load_manifests
from migrator import core as migrator_core

CONFIG_KEY = kyma.CONFIG_KEY
# A value only the user's configuration has: where it is, the configuration is.
MARKER = str(
    yaml.safe_load(legacy.legacy_configmap()["data"][CONFIG_KEY])["servers"]["businessDataTunnel"][
        "externalHost"
    ]
)
EDITED = "edited.state-space.example"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SM_CRD = "servicemappings.connectivityproxy.sap.com"
KYMA = "kyma-system"
MAY_DELETE = "ops.example.com/may-delete"  # the label the admission policy asks for
PROBE = "admission-probe"  # a ConfigMap the policy denies deleting (so its state is seen)

HISTORIES = (
    "none",
    "ours:M",
    "ours:MB",
    "ours:MBC",
    "go:M",
    "go:M sh:B",
    "go:M sh:B sh:C",
    "go:M ours:B",
    "ours:M sh:B",
    "ours:MB sh:C",
)
CR_EVENTS = ("kept", "recreated", "deleted", "no-crd")
STATEFULSETS = ("absent", "reconciler", "unannotated")
CONFIGMAPS = ("both", "edited", "config", "info", "none")
BACKUPS = ("as-left", "absent", "ours-corrupt", "foreign", "terminating")
MAPPINGS = ("present", "absent")
# What else real systems do (issue 22), each in states of its own: a person makes the copies
# in the backup namespace immutable; a platform team's admission policy denies deleting
# ConfigMaps in kyma-system unless labelled; a Kyma reconciler upgrade renders the legacy
# ConfigMap again after the migration; a person configured the CR before the migration.
EXTRAS = ("none", "immutable-copy", "admission-deny", "reconciler-upgrade", "cr-edited")


@dataclass(frozen=True)
class State:
    history: str
    cr: str
    sts: str
    configmaps: str
    backups: str
    mappings: str
    extra: str = "none"

    @property
    def id(self) -> str:
        found = (self.history, self.cr, self.sts, self.configmaps, self.backups, self.mappings)
        return "|".join(found + ((self.extra,) if self.extra != "none" else ()))


def extra_states() -> list[State]:
    """Each extra with every history, CR event and set of legacy ConfigMaps (the dimensions it
    meets), from a running legacy installation whose backups are as the history left them."""
    return [
        State(history, cr, "reconciler", configmaps, "as-left", "present", extra)
        for extra in EXTRAS[1:]
        for history, cr, configmaps in itertools.product(HISTORIES, CR_EVENTS, CONFIGMAPS)
    ]


def every_state() -> list[State]:
    return [
        State(*values)
        for values in itertools.product(
            HISTORIES, CR_EVENTS, STATEFULSETS, CONFIGMAPS, BACKUPS, MAPPINGS
        )
    ] + extra_states()


def representative_extra_states(seed: int = 22) -> list[State]:
    """For each extra, states that cover every pair of it with a history, a CR event and a set
    of ConfigMaps (greedy, deterministic for the seed)."""
    chosen: list[State] = []
    for extra in EXTRAS[1:]:
        candidates = [s for s in extra_states() if s.extra == extra]
        random.Random(seed).shuffle(candidates)
        uncovered = {("history", h) for h in HISTORIES} | {("cr", c) for c in CR_EVENTS}
        uncovered |= {("configmaps", c) for c in CONFIGMAPS}
        while uncovered:
            best = max(
                candidates,
                key=lambda s: len(
                    {("history", s.history), ("cr", s.cr), ("configmaps", s.configmaps)} & uncovered
                ),
            )
            chosen.append(best)
            uncovered -= {
                ("history", best.history),
                ("cr", best.cr),
                ("configmaps", best.configmaps),
            }
            candidates.remove(best)
    return chosen


def representative_states(count: int, seed: int = 11) -> list[State]:
    """`count` states that together cover every pair of values of any two dimensions as far
    as `count` allows (greedy pairwise), deterministic for the seed."""
    dimensions = (HISTORIES, CR_EVENTS, STATEFULSETS, CONFIGMAPS, BACKUPS, MAPPINGS)
    uncovered = {
        (i, a, j, b)
        for i, j in itertools.combinations(range(len(dimensions)), 2)
        for a in dimensions[i]
        for b in dimensions[j]
    }
    candidates = [state for state in every_state() if state.extra == "none"]
    random.Random(seed).shuffle(candidates)
    chosen: list[State] = []

    def pairs(state: State) -> set[tuple[int, str, int, str]]:
        values = (
            state.history,
            state.cr,
            state.sts,
            state.configmaps,
            state.backups,
            state.mappings,
        )
        return {
            (i, values[i], j, values[j]) for i, j in itertools.combinations(range(len(values)), 2)
        }

    while len(chosen) < count and uncovered:
        best = max(candidates, key=lambda s: len(pairs(s) & uncovered))
        chosen.append(best)
        uncovered -= pairs(best)
        candidates.remove(best)
    rest = [s for s in candidates if s not in chosen]
    return chosen + rest[: max(0, count - len(chosen))]


# -- where the tools and the builders write ---------------------------------------------------


class Env(Protocol):
    """What the builders need from a cluster (real or in memory)."""

    @property
    def kube(self) -> Kube: ...

    def apply(self, objects: Iterable[dict[str, Any]]) -> None: ...

    def install_crd(self, crd: dict[str, Any]) -> None: ...

    def delete_crd(self, name: str) -> None: ...

    def finalize_namespace(self, name: str) -> None: ...

    def deny_configmap_deletes(self) -> None: ...


def configmap_path(namespace: str, name: str | None = None) -> str:
    return resource_path("", "v1", "configmaps", namespace, name)


CP_CRD = load_manifests(FIXTURES / "crd-connectivityproxy.yaml")[0]
THIRD_PARTY = {
    crd["metadata"]["name"]: crd for crd in load_manifests(FIXTURES / "crds-third-party.yaml")
}
MAPPING = {
    "apiVersion": "connectivityproxy.sap.com/v1",
    "kind": "ServiceMapping",
    "metadata": {"name": "erp-backend"},
    "spec": {
        "type": "RFC",
        "subaccountId": "1b3c5d7e-9f21-4a6b-8c0d-2e4f6a8b0c1d",
        "serviceId": "erp-backend",
        "internalAddress": "erp-backend.default.svc.cluster.local:3300",
    },
}
LEGACY_SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "connectivity-proxy", "namespace": KYMA},
    "spec": {"ports": [{"name": "http", "port": 20003}]},
}


def _delete(env: Env, path: str) -> None:
    env.kube.delete(path)


def _ensure_namespace(env: Env, name: str) -> None:
    env.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])


# Parsed once: thousands of states are built from them.
_STATEFULSET = legacy.legacy_statefulset()
_CONFIGMAPS = {
    "connectivity-proxy": legacy.legacy_configmap(),
    "connectivity-proxy-info": legacy.legacy_info(),
}
_DEFAULT_CR = legacy.default_cr()


def statefulset(*, annotated: bool = True) -> dict[str, Any]:
    found = copy.deepcopy(_STATEFULSET)
    if not annotated:
        found["metadata"].pop("annotations", None)
    return found


def original_configmaps() -> dict[str, dict[str, Any]]:
    return copy.deepcopy(_CONFIGMAPS)


def default_cr() -> dict[str, Any]:
    return copy.deepcopy(_DEFAULT_CR)


# -- the tools, ours and the original ones -----------------------------------------------------


@dataclass
class Run:
    step: str
    exit_code: int
    message: str


def run_step(env: Env, step: str) -> Run:
    """One of our steps as its init container runs it (the core, errors to exit codes)."""
    try:
        if step == "migrator":
            outcome: Any = migrator_core.migrate(env.kube, migrator_core.Settings())
        elif step == "backup":
            outcome = backup_core.backup(env.kube, backup_core.Settings())
        else:
            outcome = cleaner_core.clean(env.kube, cleaner_core.Settings())
    except CpError as err:
        return Run(step, err.exit_code, str(err))
    return Run(step, 0, str(outcome.summary))


STEPS = ("migrator", "backup", "cleaner")


def run_chain(env: Env) -> list[Run]:
    """The init containers in order; a failing one ends the run (the kubelet retries it)."""
    runs: list[Run] = []
    for step in STEPS:
        runs.append(run_step(env, step))
        if runs[-1].exit_code != 0:
            break
    return runs


def _annotate(env: Env, values: dict[str, str | None]) -> None:
    env.kube.merge_patch(CR_PATH, {"metadata": {"annotations": values}}, retry_safe=True)


def remove_migration_marks(kube: Kube) -> None:
    """The remedy a refusal over data changed after the migration names, as a person carries
    it out: `kubectl annotate ... migrated- backed-up-` (then the Pod restarts the chain)."""
    marks = {kyma.ANNOTATION_MIGRATED: None, kyma.ANNOTATION_BACKED_UP: None}
    kube.merge_patch(CR_PATH, {"metadata": {"annotations": marks}}, retry_safe=True)


def go_migrate(env: Env) -> None:
    """The original Go migrator: the configuration and ports into spec.config, the mark; it
    records nothing about what it read."""
    configmaps = original_configmaps()
    config = yaml.safe_load(configmaps["connectivity-proxy"]["data"][CONFIG_KEY])
    ports = configmaps["connectivity-proxy-info"]["data"]
    config.setdefault("servers", {}).setdefault("proxy", {})
    for key, field_name in (
        ("onpremise_proxy_http_port", "http"),
        ("onpremise_proxy_ldap_port", "rfcAndLdap"),
        ("onpremise_socks5_proxy_port", "socks5"),
    ):
        config["servers"]["proxy"].setdefault(field_name, {})["port"] = int(ports[key])
    env.kube.merge_patch(
        CR_PATH,
        {
            "metadata": {"annotations": {kyma.ANNOTATION_MIGRATED: "true"}},
            "spec": {"config": config},
        },
        retry_safe=True,
    )


def backup_sh_copy(source: dict[str, Any]) -> dict[str, Any]:
    """What `kubectl get -o yaml | sed s/namespace: kyma-system/... | kubectl apply -f -`
    leaves: the source's labels, annotations and data, kubectl's last-applied copy."""
    meta = source["metadata"]
    copy_: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": meta["name"],
            "namespace": kyma.BACKUP_NAMESPACE,
            "labels": dict(meta.get("labels") or {}),
            "annotations": dict(meta.get("annotations") or {}),
        },
        "data": dict(source.get("data") or {}),
    }
    copy_["metadata"]["annotations"][LAST_APPLIED] = json.dumps(copy_, sort_keys=True)
    return copy_


def backup_sh(env: Env) -> None:
    """The original backup.sh: deletes earlier copies, copies what exists, marks the CR."""
    _ensure_namespace(env, kyma.BACKUP_NAMESPACE)
    for name in kyma.SOURCES:
        _delete(env, configmap_path(kyma.BACKUP_NAMESPACE, name))
    for name in kyma.SOURCES:
        source = env.kube.get(configmap_path(KYMA, name))
        if source is not None:
            env.apply([backup_sh_copy(source)])
    _annotate(env, {kyma.ANNOTATION_BACKED_UP: "true"})


def cleaner_sh(env: Env) -> None:
    """The original cleaner.sh: hands ServiceMappings over, deletes the legacy objects (the
    user configuration with them, whatever the backup), marks the CR."""
    if env.kube.get(
        resource_path("apiextensions.k8s.io", "v1", "customresourcedefinitions", name=SM_CRD)
    ):
        handover = {
            "metadata": {
                "labels": {"app.kubernetes.io/managed-by": "sap.connectivity.proxy.operator"},
                "annotations": {
                    "io.javaoperatorsdk/primary-name": "connectivity-proxy",
                    "io.javaoperatorsdk/primary-namespace": KYMA,
                },
            }
        }
        for item in env.kube.list(
            resource_path("connectivityproxy.sap.com", "v1", "servicemappings")
        ):
            env.kube.merge_patch(
                resource_path(
                    "connectivityproxy.sap.com",
                    "v1",
                    "servicemappings",
                    name=item["metadata"]["name"],
                ),
                handover,
                retry_safe=True,
            )
    _delete(env, resource_path("apps", "v1", "statefulsets", KYMA, "connectivity-proxy"))
    _delete(env, resource_path("", "v1", "services", KYMA, "connectivity-proxy"))
    for name in kyma.SOURCES:
        _delete(env, configmap_path(KYMA, name))
    _annotate(env, {kyma.ANNOTATION_CLEANED: "true"})


UPGRADED_VERSION = "2.21.0"


def reconciler_upgrade(env: Env) -> None:
    """A Kyma reconciler upgrade after the migration: it renders the legacy ConfigMap again
    from the newer chart (its own formatting, a changed default, its version label)."""
    path = configmap_path(KYMA, "connectivity-proxy")
    current = env.kube.get(path)
    if current is None:
        return
    config = yaml.safe_load(current["data"][CONFIG_KEY])
    config["highAvailabilityMode"] = "path"
    labels = dict(current["metadata"].get("labels") or {})
    labels["reconciler.kyma-project.io/origin-version"] = UPGRADED_VERSION
    env.kube.merge_patch(
        path,
        {
            "metadata": {"labels": labels},
            "data": {CONFIG_KEY: yaml.safe_dump(config, sort_keys=True)},
        },
        retry_safe=True,
    )


def _ours(env: Env, step: str) -> None:
    run = run_step(env, step)
    assert run.exit_code == 0, f"building the state: our {step}: {run.message}"


PRODUCERS: dict[str, Callable[[Env], None]] = {
    "ours:M": lambda env: _ours(env, "migrator"),
    "ours:B": lambda env: _ours(env, "backup"),
    "ours:C": lambda env: _ours(env, "cleaner"),
    "go:M": go_migrate,
    "sh:B": backup_sh,
    "sh:C": cleaner_sh,
}


def _expand(history: str) -> list[str]:
    steps: list[str] = []
    for part in history.split():
        tool, _, letters = part.partition(":")
        steps += [f"{tool}:{letter}" for letter in letters]
    return steps


# -- building a state --------------------------------------------------------------------------


def install(env: Env, *, mappings: bool) -> None:
    """A standard legacy installation and the module's default CR."""
    _ensure_namespace(env, KYMA)
    env.install_crd(copy.deepcopy(CP_CRD))
    if mappings:
        env.install_crd(copy.deepcopy(THIRD_PARTY[SM_CRD]))
        env.apply([copy.deepcopy(MAPPING)])
    env.apply([statefulset(), *original_configmaps().values(), copy.deepcopy(LEGACY_SERVICE)])
    env.apply([default_cr()])


PERSONS_CR_CONFIG = {"highAvailabilityMode": "subdomain", "serviceChannels": {"enabled": True}}


def edit_cr_config(env: Env) -> None:
    """A person configured the module in its CR (kubectl edit) before the migration ran."""
    env.kube.merge_patch(CR_PATH, {"spec": {"config": PERSONS_CR_CONFIG}}, retry_safe=True)


def make_backups_immutable(env: Env) -> None:
    """A person protected the copies in the backup namespace (kubectl patch ... immutable)."""
    namespace = env.kube.get(resource_path("", "v1", "namespaces", name=kyma.BACKUP_NAMESPACE))
    if namespace is None or namespace["metadata"].get("deletionTimestamp"):
        return
    for name in kyma.SOURCES:
        path = configmap_path(kyma.BACKUP_NAMESPACE, name)
        if env.kube.get(path) is not None:
            env.kube.merge_patch(path, {"immutable": True}, retry_safe=True)


def build(env: Env, state: State) -> None:
    install(env, mappings=state.mappings == "present")
    if state.extra == "cr-edited":
        edit_cr_config(env)
    if state.history != "none":
        for step in _expand(state.history):
            PRODUCERS[step](env)
    # What happened to the CR afterwards.
    if state.cr in ("recreated", "deleted"):
        _delete(env, CR_PATH)
        if state.cr == "recreated":
            env.apply([default_cr()])
    elif state.cr == "no-crd":
        env.delete_crd(kyma.CRD_NAME)
    # The legacy StatefulSet.
    sts_path = resource_path("apps", "v1", "statefulsets", KYMA, "connectivity-proxy")
    if state.sts == "absent":
        _delete(env, sts_path)
    else:
        env.apply([statefulset(annotated=state.sts == "reconciler")])
    # The legacy ConfigMaps: the reconciler installs them again; a person edits or deletes.
    wanted = {
        "both": kyma.SOURCES,
        "edited": kyma.SOURCES,
        "config": ("connectivity-proxy",),
        "info": ("connectivity-proxy-info",),
        "none": (),
    }[state.configmaps]
    for name, original in original_configmaps().items():
        path = configmap_path(KYMA, name)
        if name not in wanted:
            _delete(env, path)
        elif env.kube.get(path) is None:
            env.apply([original])
    if state.configmaps == "edited":
        current = env.kube.get(configmap_path(KYMA, "connectivity-proxy"))
        assert current is not None
        text = current["data"][CONFIG_KEY].replace(MARKER, EDITED)
        env.kube.merge_patch(
            configmap_path(KYMA, "connectivity-proxy"),
            {"data": {CONFIG_KEY: text}},
            retry_safe=True,
        )
    # The backups.
    if state.backups == "absent":
        for name in kyma.SOURCES:
            _delete(env, configmap_path(kyma.BACKUP_NAMESPACE, name))
    elif state.backups == "ours-corrupt":
        _ensure_namespace(env, kyma.BACKUP_NAMESPACE)
        source = original_configmaps()["connectivity-proxy"]
        source["metadata"].update({"uid": "uid-earlier", "resourceVersion": "1"})
        content = backup_plan.backup_content(source, "2026-01-01T00:00:00Z")
        ours = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "connectivity-proxy",
                "namespace": kyma.BACKUP_NAMESPACE,
                **content["metadata"],
            },
            # A person edited it after cp-backup made it: its digest no longer verifies.
            "data": {CONFIG_KEY: content["data"][CONFIG_KEY] + "# edited by hand\n"},
        }
        env.apply([ours])
    elif state.backups == "foreign":
        _ensure_namespace(env, kyma.BACKUP_NAMESPACE)
        for name in kyma.SOURCES:
            _delete(env, configmap_path(kyma.BACKUP_NAMESPACE, name))
        env.apply([backup_sh_copy(cm) for cm in original_configmaps().values()])
    elif state.backups == "terminating":
        _ensure_namespace(env, kyma.BACKUP_NAMESPACE)
        _delete(env, resource_path("", "v1", "namespaces", name=kyma.BACKUP_NAMESPACE))
    # What else happened (issue 22).
    if state.extra == "immutable-copy":
        make_backups_immutable(env)
    elif state.extra == "reconciler-upgrade":
        reconciler_upgrade(env)
    elif state.extra == "admission-deny":
        env.deny_configmap_deletes()


# -- what is true of a state ---------------------------------------------------------------------


@dataclass
class Where:
    """Where the user's configuration is (the marker value, or its edited version)."""

    places: set[str] = field(default_factory=set)

    def safe(self) -> bool:
        return bool(self.places - {"backup (Terminating namespace)"})


def where_config(env: Env) -> Where:
    found = Where()
    values = (MARKER, EDITED)
    cr = env.kube.get(CR_PATH)
    if cr is not None and any(v in json.dumps(cr.get("spec") or {}) for v in values):
        found.places.add("CR")
    live = env.kube.get(configmap_path(KYMA, "connectivity-proxy"))
    if live is not None and any(v in json.dumps(live.get("data") or {}) for v in values):
        found.places.add("legacy ConfigMap")
    namespace = env.kube.get(resource_path("", "v1", "namespaces", name=kyma.BACKUP_NAMESPACE))
    if namespace is not None:
        terminating = bool(namespace["metadata"].get("deletionTimestamp"))
        for item in env.kube.list(configmap_path(kyma.BACKUP_NAMESPACE)):
            if any(v in json.dumps(item.get("data") or {}) for v in values):
                kind = "preserved copy" if backups.is_preserved(item) else "backup"
                found.places.add(f"{kind} (Terminating namespace)" if terminating else kind)
    return found


def cr_annotations(env: Env) -> dict[str, str] | None:
    cr = env.kube.get(CR_PATH)
    return None if cr is None else annotations_of(cr)


# -- remedies: what a person (or the module) does on each message -------------------------------


def remedy(env: Env, run: Run) -> str | None:
    """The remedy a message names, carried out as the person would; None: none known."""
    text = run.message
    if "does not exist yet" in text:  # the module creates its CRD and CR
        env.install_crd(copy.deepcopy(CP_CRD))
        env.apply([default_cr()])
        return "the module creates its CR"
    if "installs it again on its next reconciliation" in text:
        for name, original in original_configmaps().items():
            if env.kube.get(configmap_path(KYMA, name)) is None:
                env.apply([original])
        return "the reconciler installs the ConfigMaps again"
    if "is being deleted (Terminating" in text:
        env.finalize_namespace(kyma.BACKUP_NAMESPACE)
        return "the namespace finishes terminating"
    if "connectivityproxy.sap.com/migrated- connectivityproxy.sap.com/backed-up-" in text:
        remove_migration_marks(env.kube)
        return "kubectl annotate ... migrated- backed-up-, pod restarted"
    if f"kubectl label configmap -n {kyma.BACKUP_NAMESPACE}" in text:
        for name in kyma.SOURCES:
            path = configmap_path(kyma.BACKUP_NAMESPACE, name)
            if env.kube.get(path) is not None:
                env.kube.merge_patch(
                    path, {"metadata": {"labels": {kyma.BACKUP_LABEL: None}}}, retry_safe=True
                )
        return "kubectl label ... made-by-"
    if "admission control denies" in text:  # label them as the policy's message asks
        for item in list(env.kube.list(configmap_path(KYMA))):
            if item["metadata"]["name"] in kyma.SOURCES:
                env.kube.merge_patch(
                    configmap_path(KYMA, item["metadata"]["name"]),
                    {"metadata": {"labels": {MAY_DELETE: "true"}}},
                    retry_safe=True,
                )
        return "ConfigMaps labelled as the admission policy asks"
    if "rollout restart" in text:  # the chain runs again from the migrator
        return "operator Pod restarted"
    return None


@dataclass
class Outcome:
    state: State
    first: list[Run]
    second: list[Run]
    remedies: list[str]
    final: list[Run]
    start: Where
    end: Where
    problems: list[str]

    def codes(self, runs: list[Run]) -> str:
        return " ".join(str(r.exit_code) for r in runs) + " -" * (3 - len(runs))


def persons_values_problems(env: Env, state: State, final: list[Run]) -> list[str]:
    """A person's values in the CR that our migrator replaced are kept (issue 22): where ours
    migrated the edited CR (in the history, or in the chain from a kept CR), the CR still
    holds them or the record in the backup namespace does."""
    ours_replaced = "ours:M" in state.history or (state.history == "none" and state.cr == "kept")
    if state.extra != "cr-edited" or not ours_replaced or final[-1].exit_code != 0:
        return []
    wanted = PERSONS_CR_CONFIG["highAvailabilityMode"]
    cr = env.kube.get(CR_PATH)
    if (
        cr is not None
        and ((cr.get("spec") or {}).get("config") or {}).get("highAvailabilityMode") == wanted
    ):
        return []
    record = env.kube.get(configmap_path(kyma.BACKUP_NAMESPACE, kyma.CR_VALUES_CONFIGMAP))
    if record is None or backups.cr_values_problem(record) is not None:
        return ["the values a person set in the CR were replaced and not kept"]
    if backups.cr_values_of(record).get("highAvailabilityMode") != wanted:
        return [f"the record of the CR's values lacks highAvailabilityMode={wanted}"]
    return []


def converge(env: Env, state: State, versions: Callable[[], Any]) -> Outcome:
    """Run the chain twice from `state`; then, while it does not end in exit 0, carry out the
    remedy its message names and run it again. Check what must hold on the way."""
    build(env, state)
    start = where_config(env)
    problems: list[str] = []
    first = run_chain(env)
    after_first = versions()
    second = run_chain(env)
    if all(r.exit_code == 0 for r in first) and versions() != after_first:
        problems.append("a second run of a finished chain wrote something")
    final, remedies = second, []
    for _ in range(4):
        last = final[-1]
        if last.exit_code == 0:
            break
        if last.exit_code == 3 and not any(
            ref in last.message for ref in ("kyma-system/", f"{kyma.BACKUP_NAMESPACE}/")
        ):
            problems.append(f"exit 3 names no object: {last.message}")
        done = remedy(env, last)
        if done is None:
            problems.append(
                f"no remedy known for {last.step} exit {last.exit_code}: {last.message}"
            )
            break
        remedies.append(done)
        final = run_chain(env)
    end = where_config(env)
    if final[-1].exit_code != 0:
        problems.append(f"does not converge: {final[-1].step}: {final[-1].message}")
    for runs in (first, second, final):
        for run in runs:
            if run.exit_code not in (0, 1, 3):
                problems.append(f"{run.step} exit {run.exit_code}")
    if start.safe() and not end.safe():
        problems.append(f"the configuration was lost: it was in {start.places}, now {end.places}")
    problems += persons_values_problems(env, state, final)
    annotations = cr_annotations(env)
    if annotations is not None and final[-1].exit_code == 0:
        migrated = annotations.get(kyma.ANNOTATION_MIGRATED) == "true"
        cleaned = annotations.get(kyma.ANNOTATION_CLEANED) == "true"
        orphaned = kyma.ANNOTATION_ORPHANED in annotations
        if cleaned and not migrated:
            problems.append("marked cleaned but not migrated")
        # Orphaned ConfigMaps excuse a CR without the configuration only where they hold it.
        excused = orphaned and "legacy ConfigMap" in end.places
        if start.safe() and "CR" not in end.places and not excused:
            problems.append(
                f"every step succeeded but the CR lacks the configuration (it is in {end.places})"
            )
    return Outcome(state, first, second, remedies, final, start, end, problems)


def table(outcomes: list[Outcome]) -> str:
    from tests.support import reports

    header = ["history", "cr", "sts", "configmaps", "backups", "sm", "extra", "1st", "2nd"]
    header += ["remedy"]
    header += ["final", "config at the end"]
    rows = [
        [
            o.state.history,
            o.state.cr,
            o.state.sts,
            o.state.configmaps,
            o.state.backups,
            o.state.mappings,
            o.state.extra,
            o.codes(o.first),
            o.codes(o.second),
            "; ".join(o.remedies) or "-",
            o.codes(o.final),
            ", ".join(sorted(o.end.places)) or "-",
        ]
        for o in outcomes
    ]
    return reports.table(header, rows)


# -- the in-memory environment ------------------------------------------------------------------


class MemoryEnv:
    def __init__(self) -> None:
        from tests.support.memory_apiserver import MemoryApiserver

        self.server = MemoryApiserver()
        self._kube = self.server.kube()

    @property
    def kube(self) -> Kube:
        return self._kube

    def apply(self, objects: Iterable[dict[str, Any]]) -> None:
        for obj in objects:
            obj = copy.deepcopy(obj)
            group, _, version = str(obj["apiVersion"]).rpartition("/")
            plural = _plural(obj["kind"])
            meta = obj["metadata"]
            collection = resource_path(group, version, plural, meta.get("namespace"))
            try:
                self.kube.create(collection, obj)
            except ApiError as err:
                if err.status != 409:
                    raise
                path = resource_path(group, version, plural, meta.get("namespace"), meta["name"])
                current = self.kube.get(path)
                assert current is not None
                if obj["kind"] == "Namespace":
                    continue
                meta["resourceVersion"] = current["metadata"]["resourceVersion"]
                self.kube.replace(path, obj)

    def install_crd(self, crd: dict[str, Any]) -> None:
        self.apply([crd])

    def delete_crd(self, name: str) -> None:
        self.kube.delete(
            resource_path("apiextensions.k8s.io", "v1", "customresourcedefinitions", name=name)
        )

    def finalize_namespace(self, name: str) -> None:
        self.server.finalize_namespace(name)

    def deny_configmap_deletes(self) -> None:
        def rule(operation: str, key: Any, current: dict[str, Any] | None) -> str | None:
            group, plural, namespace, _ = key
            labels = ((current or {}).get("metadata") or {}).get("labels") or {}
            guarded = (operation, group, plural, namespace) == ("DELETE", "", "configmaps", KYMA)
            if guarded and MAY_DELETE not in labels:
                return f"ConfigMaps in {KYMA} may only be deleted once labelled {MAY_DELETE}"
            return None

        self.server.admission.append(("guard-kyma-system-configmaps", rule))

    def versions(self) -> Any:
        return self.server.versions()


def _plural(kind: str) -> str:
    lower = kind.lower()
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    if lower.endswith("s"):
        return lower + "es"
    return lower + "s"


# -- the real apiserver -------------------------------------------------------------------------


class ClusterEnv:
    """The same builders on the real apiserver (hack/devenv/cluster.Cluster)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    @property
    def kube(self) -> Kube:
        return self.cluster.kube

    def apply(self, objects: Iterable[dict[str, Any]]) -> None:
        self.cluster.apply([copy.deepcopy(obj) for obj in objects])

    def install_crd(self, crd: dict[str, Any]) -> None:
        self.cluster.apply([crd])

    def delete_crd(self, name: str) -> None:
        self.cluster.delete_crd(name)

    def finalize_namespace(self, name: str) -> None:
        self.cluster.finalize_namespace(name)

    policy: list[dict[str, Any]] | None = None

    def deny_configmap_deletes(self) -> None:
        from tests.support import admission

        self.policy = admission.configmap_deletes_unless_labelled(KYMA)
        self.cluster.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": PROBE, "namespace": KYMA},
                }
            ]
        )
        admission.apply_and_wait(self.cluster, self.policy, self._probe)

    def _probe(self) -> None:
        self.kube.delete(configmap_path(KYMA, PROBE), dry_run=True)

    def reset(self, state: State) -> None:
        """Nothing of an earlier state left; the ServiceMapping CRD only where wanted."""
        if self.policy is not None:
            from tests.support import admission

            admission.remove_and_wait(self.cluster, self.policy, self._probe)
            self.policy = None
        self.cluster.reset()
        crd = resource_path("apiextensions.k8s.io", "v1", "customresourcedefinitions", name=SM_CRD)
        if state.mappings == "absent" and self.kube.get(crd) is not None:
            self.cluster.delete_crd(SM_CRD)

    def versions(self) -> Any:
        from tests.support import chain

        return chain.resource_versions(self.cluster)
