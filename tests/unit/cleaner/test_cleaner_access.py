"""Pure units: the cleaner's permission preflight (planned writes against reviewed rules)."""

from __future__ import annotations

from typing import Any

from cleaner import access
from cleaner import plan as planning
from hack.devenv.cluster import REPO, load_manifests

SECRET = access.Write("delete", "", "secrets", "istio-system", "cc-certs")
PRIORITY_CLASS = access.Write(
    "delete", "scheduling.k8s.io", "priorityclasses", None, "connectivity-proxy-priority-class"
)
EVERY_MAPPING = access.Write("patch", "connectivityproxy.sap.com", "servicemappings", None, None)


def rule(verbs: list[str], groups: list[str], resources: list[str], *names: str) -> dict[str, Any]:
    found: dict[str, Any] = {"verbs": verbs, "apiGroups": groups, "resources": resources}
    if names:
        found["resourceNames"] = list(names)
    return found


def test_a_rule_matches_verb_group_resource_and_name() -> None:
    assert access.rule_allows(rule(["delete"], [""], ["secrets"], "cc-certs"), SECRET)
    assert access.rule_allows(rule(["get", "delete"], [""], ["secrets"]), SECRET)
    assert not access.rule_allows(rule(["get"], [""], ["secrets"], "cc-certs"), SECRET)
    assert not access.rule_allows(rule(["delete"], ["apps"], ["secrets"]), SECRET)
    assert not access.rule_allows(rule(["delete"], [""], ["configmaps"]), SECRET)
    assert not access.rule_allows(rule(["delete"], [""], ["secrets"], "cc-certs-cacert"), SECRET)


def test_wildcards_are_honoured_except_in_resource_names_as_in_rbac() -> None:
    assert access.rule_allows(rule(["*"], ["*"], ["*"]), PRIORITY_CLASS)
    scheduling_only = rule(["*"], ["scheduling.k8s.io"], ["priorityclasses"])
    assert not access.rule_allows(scheduling_only, SECRET)
    assert access.rule_allows(rule(["delete"], ["*"], ["secrets"]), SECRET)
    assert access.rule_allows(rule(["delete"], [""], ["*"]), SECRET)
    assert not access.rule_allows(rule(["delete"], [""], ["secrets"], "*"), SECRET)
    # A subresource rule grants nothing on the resource itself.
    assert not access.rule_allows(rule(["delete"], [""], ["secrets/status"]), SECRET)


def test_writes_to_unknown_names_need_a_rule_without_resource_names() -> None:
    groups = ["connectivityproxy.sap.com"]
    assert access.rule_allows(rule(["list", "patch"], groups, ["servicemappings"]), EVERY_MAPPING)
    assert not access.rule_allows(rule(["patch"], groups, ["servicemappings"], "a"), EVERY_MAPPING)


def review(namespace: str, *rules: dict[str, Any], incomplete: bool = False) -> access.Review:
    return access.Review.from_status(
        namespace,
        {"resourceRules": list(rules), "incomplete": incomplete, "evaluationError": "webhook"}
        if incomplete
        else {"resourceRules": list(rules)},
    )


def test_check_denies_what_a_complete_review_does_not_show() -> None:
    planned = [SECRET, PRIORITY_CLASS]
    reviews = {
        "istio-system": review("istio-system", rule(["get"], [""], ["secrets"], "cc-certs")),
        # Cluster-scoped writes are checked against the kyma-system review.
        "kyma-system": review("kyma-system", rule(["delete"], ["scheduling.k8s.io"], ["*"])),
    }
    verdict = access.check(planned, reviews)
    assert verdict.denied == [SECRET]
    assert verdict.unverified == []
    assert str(SECRET) == (
        'cannot delete resource "secrets" in API group "": secrets istio-system/cc-certs'
    )
    assert str(PRIORITY_CLASS).endswith(
        "priorityclasses.scheduling.k8s.io connectivity-proxy-priority-class"
    )
    assert EVERY_MAPPING.ref == "*" and "every servicemappings" in str(EVERY_MAPPING)


def test_an_incomplete_or_missing_review_blocks_nothing() -> None:
    reviews = {"istio-system": review("istio-system", incomplete=True)}
    verdict = access.check([SECRET, PRIORITY_CLASS], reviews)
    assert verdict.denied == []
    assert verdict.unverified == [SECRET, PRIORITY_CLASS]
    assert reviews["istio-system"].error == "webhook"
    # What an incomplete review does show is allowed without doubt.
    shown = {
        "istio-system": review("istio-system", rule(["*"], [""], ["secrets"]), incomplete=True)
    }
    assert access.check([SECRET], shown) == access.Verdict([], [])


def full_plan() -> planning.Plan:
    found = {obj: {"name": obj.name, "uid": f"u-{obj.name}"} for obj in planning.LEGACY_OBJECTS}
    backups = {
        name: None for name in ("connectivity-proxy", "connectivity-proxy-info")
    }  # no backup: the two user ConfigMaps are kept (and refused), the rest deleted
    inputs = planning.Inputs(
        cr={"metadata": {"annotations": {}}},
        found=found,
        versions={kind: kind.version for kind, _, _ in planning.LEGACY_TABLE},
        backups=backups,
        mapping_crd={
            "metadata": {},
            "spec": {"scope": "Cluster", "versions": [{"name": "v1", "served": True}]},
        },
    )
    return planning.plan(inputs)


def test_the_planned_writes_cover_deletes_hand_over_and_mark() -> None:
    plan = full_plan()
    planned = access.writes(plan)
    assert len([w for w in planned if w.verb == "delete"]) == len(plan.all_deletes) == 33
    assert (
        access.Write(
            "patch", "apiextensions.k8s.io", "customresourcedefinitions", None, planning.MAPPING_CRD
        )
        in planned
    )
    assert EVERY_MAPPING in planned
    assert (
        access.Write(
            "patch",
            "connectivityproxy.sap.com",
            "connectivityproxies",
            "kyma-system",
            "connectivity-proxy",
        )
        in planned
    )
    assert access.namespaces(planned) == ["istio-system", "kyma-system"]
    # Only the mark: one review.
    assert access.namespaces(access.writes(planning.Plan())) == ["kyma-system"]


def test_deploy_rbac_allows_every_write_of_a_full_plan() -> None:
    """deploy/rbac.yaml, as the reviews would show it for the ServiceAccount: every planned
    write of a complete legacy installation is allowed."""
    objects = load_manifests(REPO / "deploy" / "rbac.yaml")
    cluster_rules = [r for o in objects if o["kind"] == "ClusterRole" for r in o["rules"]]
    reviews = {
        o["metadata"]["namespace"]: access.Review(
            o["metadata"]["namespace"], tuple(cluster_rules + o["rules"])
        )
        for o in objects
        if o["kind"] == "Role"
    }
    planned = access.writes(full_plan())
    assert access.check(planned, reviews) == access.Verdict([], [])
