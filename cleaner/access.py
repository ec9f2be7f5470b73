"""Pure permission preflight: is every write the plan makes allowed? No I/O here.

Before its first write the cleaner asks the apiserver once per namespace it writes in for the
rules it holds there (SelfSubjectRulesReview; the rules of ClusterRoleBindings appear in every
namespace's answer) and checks each planned write against them, as RBAC matches a request:
verb, API group and resource match exactly or by `*`; a rule with resourceNames covers only
those names (`*` is no wildcard there, as in RBAC). A missing permission then stops the cleaner
before it has deleted anything, instead of a 403 halfway through.

Limits, on purpose: cluster-scoped writes are checked against the kyma-system review (a review
needs a namespace), so a cluster-scoped rule that only a namespaced Role carries would be
wrongly counted (RBAC ignores it); a review that says it is incomplete (another authorizer,
e.g. a webhook, may allow more) never blocks: what it does not show is logged and tried.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cleaner import plan as planning
from common import kyma

# Cluster-scoped writes are checked here: the kyma-system review is made anyway (the mark).
CLUSTER_SCOPE_REVIEW = kyma.NAMESPACE
CRD_GROUP = "apiextensions.k8s.io"


@dataclass(frozen=True, order=True)
class Write:
    verb: str
    group: str  # "" is the core group
    resource: str
    namespace: str | None  # None: cluster-scoped (or every namespace, for ServiceMappings)
    name: str | None  # None: objects whose names are not known in advance (ServiceMappings)

    @property
    def kind(self) -> str:
        """`resource.group` (kubectl's unambiguous spelling), as the cleaner names kinds."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    @property
    def ref(self) -> str:
        """`namespace/name` (`name` when cluster-scoped, `*` for every object)."""
        name = self.name or "*"
        return kyma.ref(self.namespace, name)

    @property
    def object(self) -> str:
        return f"every {self.kind}" if self.name is None else f"{self.kind} {self.ref}"

    def __str__(self) -> str:
        # The apiserver's own wording of a 403, so both read alike in the logs.
        return (
            f'cannot {self.verb} resource "{self.resource}" in API group "{self.group}": '
            f"{self.object}"
        )


@dataclass(frozen=True)
class Review:
    """The answer of one SelfSubjectRulesReview, as plain data."""

    namespace: str
    rules: tuple[Mapping[str, Any], ...]  # status.resourceRules
    incomplete: bool = False
    error: str = ""  # status.evaluationError, or why no review could be made

    @classmethod
    def from_status(cls, namespace: str, status: Mapping[str, Any]) -> Review:
        return cls(
            namespace=namespace,
            rules=tuple(status.get("resourceRules") or ()),
            incomplete=bool(status.get("incomplete")),
            error=str(status.get("evaluationError") or ""),
        )


def writes(plan: planning.Plan) -> list[Write]:
    """Every write a real run of `plan` makes (and the one late read, see below). The Event
    is best effort and not among them."""
    found = [
        Write(
            "delete", d.target.kind.group, d.target.kind.resource, d.target.namespace, d.target.name
        )
        for d in plan.all_deletes
    ]
    if plan.crd_patch:
        found.append(
            Write("patch", CRD_GROUP, "customresourcedefinitions", None, planning.MAPPING_CRD)
        )
    if plan.mapping_version is not None:
        # Names are the users' and read only while patching: a grant for every name is needed.
        found.append(Write("patch", kyma.GROUP, planning.MAPPING_PLURAL, None, None))
        # A read, but the one read made after writing has begun (the mappings are listed
        # while they are handed over): checked up front so its absence leaves nothing half done.
        found.append(Write("list", kyma.GROUP, planning.MAPPING_PLURAL, None, None))
    found.append(Write("patch", kyma.GROUP, kyma.PLURAL, kyma.NAMESPACE, kyma.CR_NAME))
    return found


def namespaces(planned: Iterable[Write]) -> list[str]:
    """The namespaces to review: each one written in, and kyma-system for cluster scope."""
    return sorted({w.namespace or CLUSTER_SCOPE_REVIEW for w in planned})


def rule_allows(rule: Mapping[str, Any], write: Write) -> bool:
    verbs = rule.get("verbs") or ()
    groups = rule.get("apiGroups") or ()
    resources = rule.get("resources") or ()
    names = rule.get("resourceNames") or ()
    return (
        ("*" in verbs or write.verb in verbs)
        and ("*" in groups or write.group in groups)
        and ("*" in resources or write.resource in resources)
        and (not names or (write.name is not None and write.name in names))
    )


@dataclass(frozen=True)
class Verdict:
    denied: list[Write]  # not allowed by a complete review: the run must not start
    unverified: list[Write]  # not shown by an incomplete review (or none): tried anyway


def check(planned: Sequence[Write], reviews: Mapping[str, Review]) -> Verdict:
    denied: list[Write] = []
    unverified: list[Write] = []
    for write in planned:
        review = reviews.get(write.namespace or CLUSTER_SCOPE_REVIEW)
        if review is not None and any(rule_allows(rule, write) for rule in review.rules):
            continue
        if review is None or review.incomplete:
            unverified.append(write)
        else:
            denied.append(write)
    return Verdict(denied, unverified)
