"""Refusals a person can act on (issue 22), against the real control plane: a write no retry
can fix is exit 3 naming the object and the policy or field; an immutable copy in the backup
namespace is replaced once its content is kept; the cleaner sends every planned delete as a
server-side dry run first and deletes nothing when admission control denies one. Each remedy
a message offers is carried out here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common import backups, kyma
from common.backups import content_digest
from common.cluster.client import Kube, resource_path
from common.cluster.kubeconfig import resolve
from common.cr import CR_PATH, is_marked
from hack.devenv import legacy
from hack.devenv.cluster import REPO, Cluster, load_manifests
from tests.support import admission, states
from tests.support.cleaning import install_legacy
from tests.support.states import backup_sh_copy

MIGRATOR = "migrator.cli:main"
BACKUP = "backup.cli:backup_main"
CLEANER = "cleaner.cli:main"
KYMA = "kyma-system"


def configmap_path(namespace: str, name: str | None = None) -> str:
    return resource_path("", "v1", "configmaps", namespace, name)


def run_ok(cluster: Cluster, *steps: str, **kwargs: Any) -> None:
    for step in steps:
        result = cluster.run(step, **kwargs)
        assert result.exit_code == 0, result.output


def make_immutable(cluster: Cluster, namespace: str, name: str) -> None:
    """`kubectl patch configmap NAME -p '{"immutable": true}'`, as a person protects a copy."""
    cluster.kube.merge_patch(configmap_path(namespace, name), {"immutable": True}, retry_safe=True)


def operator_kubeconfig(cluster: Cluster, folder: Path) -> Path:
    """The module operator's ServiceAccount with the roles of deploy/, as its init containers
    run."""
    cluster.apply(load_manifests(REPO / "deploy" / "serviceaccount.yaml"))
    cluster.apply(load_manifests(REPO / "deploy" / "rbac.yaml"))
    return cluster.token_kubeconfig(KYMA, "connectivity-proxy-operator", folder / "operator")


def preserved_copies(cluster: Cluster) -> dict[str, dict[str, Any]]:
    return {
        item["metadata"]["name"]: item
        for item in cluster.kube.list(configmap_path(kyma.BACKUP_NAMESPACE))
        if backups.is_preserved(item)
    }


# -- 1. a write no retry can fix is exit 3 -------------------------------------------------------


def test_an_admission_denial_of_a_write_is_exit_3_naming_the_policy_and_the_remedy_works(
    cluster: Cluster,
) -> None:
    cr = legacy.default_cr()
    cr["metadata"].setdefault("labels", {})[admission.FROZEN] = "true"
    legacy.install(cluster, cr=cr)

    def probe() -> None:
        cluster.kube.merge_patch(
            CR_PATH,
            {"metadata": {"annotations": {"probe": "x"}}},
            retry_safe=True,
            dryRun="All",
        )

    with admission.enforced(cluster, admission.frozen_connectivity_proxy(KYMA), probe):
        before = cluster.cr()
        result = cluster.run(MIGRATOR)
        assert result.exit_code == 3, result.output
        object_named = (
            "connectivityproxies.connectivityproxy.sap.com kyma-system/connectivity-proxy"
        )
        assert object_named in result.output, result.output
        assert "ValidatingAdmissionPolicy freeze-connectivity-proxy" in result.output
        assert "remove the label first" in result.output  # the policy's own message
        assert "An admission policy decides this, not RBAC" in result.output
        assert cluster.cr() == before  # nothing changed
        # The remedy: change the object as the policy's message asks; the next run goes on.
        cluster.kube.merge_patch(
            CR_PATH,
            {"metadata": {"labels": {admission.FROZEN: None}}},
            retry_safe=True,
        )
        run_ok(cluster, MIGRATOR)
    migrated = cluster.cr()
    assert migrated and is_marked(migrated, kyma.ANNOTATION_MIGRATED)


def test_an_rbac_403_stays_exit_1(cluster: Cluster, tmp_path: Path) -> None:
    """A missing permission is no admission denial: a grant (or a retry) fixes it."""
    legacy.install(cluster)
    run_ok(cluster, MIGRATOR)
    kubeconfig = operator_kubeconfig(cluster, tmp_path)
    bindings = resource_path(
        "rbac.authorization.k8s.io", "v1", "rolebindings", kyma.BACKUP_NAMESPACE
    )
    for binding in list(cluster.kube.list(bindings)):
        cluster.kube.delete(f"{bindings}/{binding['metadata']['name']}")
    result = cluster.run(BACKUP, kubeconfig=kubeconfig)
    assert result.exit_code == 1, result.output
    assert 'cannot list resource "configmaps"' in result.output


# -- 2. immutable copies in the backup namespace -------------------------------------------------


def test_a_persons_immutable_copy_is_preserved_then_replaced(cluster: Cluster) -> None:
    legacy.install(cluster)
    run_ok(cluster, MIGRATOR)
    # A person kept copies by hand (kubectl get -o yaml | ... | kubectl apply) and made them
    # immutable to protect them.
    sources = {name: cluster.configmap(KYMA, name) for name in kyma.SOURCES}
    for name, source in sources.items():
        assert source is not None
        cluster.apply([backup_sh_copy(source)])
        make_immutable(cluster, kyma.BACKUP_NAMESPACE, name)
    theirs = {name: cluster.configmap(kyma.BACKUP_NAMESPACE, name) for name in kyma.SOURCES}

    result = cluster.run(BACKUP)
    assert result.exit_code == 0, result.output
    assert "replace" in result.output
    kept = preserved_copies(cluster)
    for name, copy_ in theirs.items():
        assert copy_ is not None
        preserved = kept[backups.preserved_name(name, copy_)]
        assert preserved["data"] == copy_["data"]
        assert preserved.get("immutable") is True
        assert backups.digest_problem(preserved) is None
        backup = cluster.configmap(kyma.BACKUP_NAMESPACE, name)
        assert backup is not None and backups.backup_problem(backup, name) is None
        assert backup["metadata"]["uid"] != copy_["metadata"]["uid"]  # replaced, not updated
        assert backup.get("immutable") is True
    cr = cluster.cr()
    assert cr and is_marked(cr, kyma.ANNOTATION_BACKED_UP)
    again = cluster.run(BACKUP)
    assert again.exit_code == 0 and "nothing to do" in again.output, again.output


def test_our_immutable_backups_are_replaced_in_a_remigration(cluster: Cluster) -> None:
    legacy.install(cluster)
    run_ok(cluster, MIGRATOR, BACKUP)
    for name in kyma.SOURCES:
        make_immutable(cluster, kyma.BACKUP_NAMESPACE, name)
    earlier = cluster.configmap(kyma.BACKUP_NAMESPACE, "connectivity-proxy-info")
    assert earlier is not None
    # The legacy configuration changes, and the person migrates it again (the remedy of the
    # drift refusal): marks removed, the chain runs again.
    cluster.kube.merge_patch(
        configmap_path(KYMA, "connectivity-proxy-info"),
        {"data": {"onpremise_proxy_http_port": "20005"}},
        retry_safe=True,
    )
    states.remove_migration_marks(cluster.kube)
    run_ok(cluster, MIGRATOR)
    result = cluster.run(BACKUP)
    assert result.exit_code == 0, result.output
    preserved = preserved_copies(cluster)[
        backups.preserved_name("connectivity-proxy-info", earlier)
    ]
    assert preserved["data"] == earlier["data"]  # the earlier migration's data is kept
    backup = cluster.configmap(kyma.BACKUP_NAMESPACE, "connectivity-proxy-info")
    assert backup is not None and backup["data"]["onpremise_proxy_http_port"] == "20005"
    assert backups.backup_problem(backup, "connectivity-proxy-info") is None
    # The unchanged one is kept as it is (immutable, verified, same data).
    unchanged = cluster.configmap(kyma.BACKUP_NAMESPACE, "connectivity-proxy")
    assert unchanged is not None and unchanged.get("immutable") is True
    run_ok(cluster, CLEANER)


def test_an_immutable_copy_that_cannot_be_deleted_is_exit_3_saying_its_content_is_kept(
    cluster: Cluster, tmp_path: Path
) -> None:
    legacy.install(cluster)
    run_ok(cluster, MIGRATOR)
    source = cluster.configmap(KYMA, "connectivity-proxy")
    assert source is not None
    cluster.apply([backup_sh_copy(source)])
    make_immutable(cluster, kyma.BACKUP_NAMESPACE, "connectivity-proxy")
    theirs = cluster.configmap(kyma.BACKUP_NAMESPACE, "connectivity-proxy")
    assert theirs is not None
    kubeconfig = operator_kubeconfig(cluster, tmp_path)
    operator = Kube(resolve(str(kubeconfig), None))

    def probe() -> None:
        # Allowed by RBAC for these names only: a dry run of the delete the policy denies.
        operator.delete(configmap_path(kyma.BACKUP_NAMESPACE, "connectivity-proxy"), dry_run=True)

    policy = admission.service_accounts_never_delete_configmaps(kyma.BACKUP_NAMESPACE)
    with admission.enforced(cluster, policy, probe):
        result = cluster.run(BACKUP, kubeconfig=kubeconfig)
        assert result.exit_code == 3, result.output
        kept_as = backups.preserved_name("connectivity-proxy", theirs)
        assert f"already preserved as {kyma.BACKUP_NAMESPACE}/{kept_as} (verified)" in result.output
        assert "ValidatingAdmissionPolicy 'people-delete-backups'" in result.output
        remedy = f"kubectl delete configmap -n {kyma.BACKUP_NAMESPACE} connectivity-proxy"
        assert remedy in result.output
        kept = cluster.configmap(kyma.BACKUP_NAMESPACE, kept_as)
        assert kept is not None and kept["data"] == theirs["data"]
        cr = cluster.cr()
        assert cr and not is_marked(cr, kyma.ANNOTATION_BACKED_UP)
        # The remedy, as the person (not a ServiceAccount) carries it out.
        cluster.kube.delete(configmap_path(kyma.BACKUP_NAMESPACE, "connectivity-proxy"))
        run_ok(cluster, BACKUP, kubeconfig=kubeconfig)
    backup = cluster.configmap(kyma.BACKUP_NAMESPACE, "connectivity-proxy")
    assert backup is not None and backups.backup_problem(backup, "connectivity-proxy") is None
    assert backup["metadata"]["annotations"][kyma.BACKUP_DIGEST_ANNOTATION] == content_digest(
        source
    )


# -- 3. the admission preflight of the cleaner ---------------------------------------------------


def test_the_cleaner_deletes_nothing_when_admission_denies_a_delete_and_the_remedy_works(
    cluster: Cluster,
) -> None:
    install_legacy(cluster)
    run_ok(cluster, MIGRATOR, BACKUP)
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "probe", "namespace": KYMA},
            }
        ]
    )

    def probe() -> None:
        cluster.kube.delete(configmap_path(KYMA, "probe"), dry_run=True)

    sts = resource_path("apps", "v1", "statefulsets", KYMA, "connectivity-proxy")
    with admission.enforced(cluster, admission.configmap_deletes_unless_labelled(KYMA), probe):
        result = cluster.run(CLEANER)
        assert result.exit_code == 3, result.output
        assert "admission control denies" in result.output
        assert "nothing was deleted and the legacy installation keeps running" in result.output
        denied = [
            line for line in result.output.splitlines() if line.strip().startswith("- configmaps")
        ]
        assert denied, result.output
        for line in denied:
            assert "ValidatingAdmissionPolicy guard-kyma-system-configmaps" in line
            assert f"may only be deleted once labelled {admission.MAY_DELETE}" in line
        for name in kyma.SOURCES:
            assert f"configmaps {KYMA}/{name}" in result.output
        # Nothing deleted: the legacy proxy still runs.
        assert cluster.kube.get(sts) is not None
        assert all(cluster.configmap(KYMA, name) for name in kyma.SOURCES)
        cr = cluster.cr()
        assert cr and not is_marked(cr, kyma.ANNOTATION_CLEANED)
        # The remedy: label them as the policy asks; the next run cleans.
        for item in list(cluster.kube.list(configmap_path(KYMA))):
            if item["metadata"]["name"] == "probe":
                continue  # the probe stays denied: leaving, the test waits for the policy's end
            cluster.kube.merge_patch(
                configmap_path(KYMA, item["metadata"]["name"]),
                {"metadata": {"labels": {admission.MAY_DELETE: "true"}}},
                retry_safe=True,
            )
        run_ok(cluster, CLEANER)
    assert cluster.kube.get(sts) is None
    cr = cluster.cr()
    assert cr and is_marked(cr, kyma.ANNOTATION_CLEANED)


def test_a_dry_run_delete_deletes_nothing(cluster: Cluster) -> None:
    """The preflight's dry runs: with a DeleteOptions body the apiserver reads dryRun from the
    body alone (a dryRun only in the query deletes the object); the client sends both."""
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "probe", "namespace": KYMA},
            }
        ]
    )
    found = cluster.configmap(KYMA, "probe")
    assert found is not None
    path = configmap_path(KYMA, "probe")
    assert cluster.kube.delete(path, uid=found["metadata"]["uid"], dry_run=True) is True
    assert cluster.configmap(KYMA, "probe") == found
