"""The three step images, built with podman and run as the kubelet runs the operator Pod's init
containers: in order, each to completion, stopping at the first failure; host network, UID
1337, read-only root, a tmpfs at /tmp, and the in-cluster configuration (a TokenRequest token
for the deploy/ ServiceAccount, bound to the deploy/ RBAC, which the apiserver enforces).

Skipped without podman on a developer machine; under CI=true it must run."""

from __future__ import annotations

import copy
import json
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from common import backups, kyma
from common.cli import package_version
from common.cluster.client import resource_path
from common.cr import annotations_of
from hack.devenv import legacy
from hack.devenv.cluster import FIXTURES, REPO, Cluster, load_manifests
from hack.devenv.images import (
    STEPS,
    Images,
    Run,
    build_images,
    embedded_kubeconfig,
    in_cluster_args,
    inspect,
    podman_or_skip,
    run_container,
    service_account_dir,
)

pytestmark = pytest.mark.images

DEPLOY = REPO / "deploy"
RBAC_FILES = ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml")
MARKS = (kyma.ANNOTATION_MIGRATED, kyma.ANNOTATION_BACKED_UP, kyma.ANNOTATION_CLEANED)
MAPPINGS = ("cp-migration-e2e-a", "cp-migration-e2e-b")
MAPPING_PATH = resource_path("connectivityproxy.sap.com", "v1", "servicemappings")
MAX_ADDED_BYTES = 120 * 1000 * 1000


@pytest.fixture(scope="session")
def images() -> Images:
    return build_images()


def deploy_objects() -> list[dict[str, Any]]:
    return [obj for name in RBAC_FILES for obj in load_manifests(DEPLOY / name)]


def legacy_objects() -> list[Any]:
    from cleaner import plan as cleaner_plan

    return list(cleaner_plan.LEGACY_OBJECTS)


def legacy_path(obj: Any) -> str:
    kind = obj.kind
    return resource_path(kind.group, kind.version, kind.resource, obj.namespace, obj.name)


@pytest.fixture
def installation(cluster: Cluster) -> Iterator[Cluster]:
    """A complete legacy installation (Istio and cert objects included), two ServiceMappings,
    the module's default CR, and the deploy/ ServiceAccount and RBAC."""
    cluster.apply_file(FIXTURES / "crds-third-party.yaml")
    cluster.apply_file(FIXTURES / "legacy-objects.yaml")
    cluster.apply_file(FIXTURES / "legacy-istio-objects.yaml")
    legacy.install(cluster)
    cluster.apply(
        {
            "apiVersion": "connectivityproxy.sap.com/v1",
            "kind": "ServiceMapping",
            "metadata": {"name": name},
            "spec": {"type": "HTTP", "subaccountId": "e2e", "internalAddress": "x:1"},
        }
        for name in MAPPINGS
    )
    cluster.apply(deploy_objects())
    yield cluster
    for name in MAPPINGS:
        cluster.kube.delete(f"{MAPPING_PATH}/{name}")


def run_chain(
    cluster: Cluster, images: Images, sa_dir: Path, steps: tuple[str, ...] = STEPS
) -> list[Run]:
    """Each step in order, stopping at the first that fails, as the kubelet does."""
    extra = in_cluster_args(cluster, sa_dir)
    runs = []
    for step in steps:
        run = run_container(step, images[step], [], extra)
        runs.append(run)
        if run.exit_code != 0:
            break
    return runs


def explain(runs: list[Run]) -> str:
    return "\n".join(f"--- {r.step}: exit {r.exit_code}\n{r.output[-3000:]}" for r in runs)


def marks_of(cluster: Cluster) -> dict[str, str]:
    cr = cluster.cr()
    assert cr is not None
    return annotations_of(cr)


# -- the images themselves ----------------------------------------------------------------------


def test_images_are_lean_non_root_labelled_and_share_their_layers(images: Images) -> None:
    base_layers = inspect(images.base)["RootFS"]["Layers"]
    found = {step: inspect(images[step]) for step in STEPS}
    layer_sets = []
    for step, info in found.items():
        config = info["Config"]
        assert config["User"] in ("1337", "1337:1337"), step
        assert config["Entrypoint"] == [f"/opt/cp/bin/cp-{step}"], step
        labels = config["Labels"]
        for key in ("source", "version", "revision", "created"):
            assert labels.get(f"org.opencontainers.image.{key}"), (step, key)
        assert labels["org.opencontainers.image.version"] == "test"
        layers = info["RootFS"]["Layers"]
        assert layers[: len(base_layers)] == base_layers, step
        layer_sets.append(layers[len(base_layers) :])
        added = info["Size"] - inspect(images.base)["Size"]
        assert added <= MAX_ADDED_BYTES, f"{step}: {added / 1e6:.1f} MB added on the base"
    # The dependencies and the project are shared; only the console scripts differ.
    first = layer_sets[0]
    for other in layer_sets[1:]:
        assert other[:-1] == first[:-1]
        assert other[-1] != first[-1]


def test_runtime_carries_no_pip_or_build_tools_and_bytecode_for_what_runs(images: Images) -> None:
    # Every module a step imports has bytecode, so no step compiles at start (read-only root).
    script = (
        "import importlib.util as u, sys\n"
        "bad = [m for m in ('pip', 'setuptools', 'wheel') if u.find_spec(m)]\n"
        "import common.cli, common.cluster.client, migrator.core, backup.core, cleaner.core\n"
        "import kubernetes.client, kubernetes.config, json, ssl\n"
        "files = [m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', '')]\n"
        "import os\n"
        "bad += [f for f in files if f.endswith('.py')\n"
        "        and not os.path.exists(u.cache_from_source(f))]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    for step in STEPS:
        run = run_container(
            step, images[step], ["-c", script], ["--entrypoint", "python3"], network="none"
        )
        assert run.exit_code == 0, (step, run.output)
        # The venv's python, as the console scripts use it, with no pip either.
        run = run_container(
            step,
            images[step],
            ["-c", "import kubernetes.config, pip"],
            ["--entrypoint", "/opt/cp/bin/python3"],
            network="none",
        )
        assert run.exit_code == 1 and "No module named 'pip'" in run.stderr, run.output


# Every module of the shipped packages has bytecode (hack/bytecode.py compiles them all), and
# the help and error paths, which import modules a run never does (click/_textwrap.py), compile
# nothing at start.
_NO_COMPILE = (
    "import importlib.util as u, os, sys, sysconfig\n"
    "roots = [sysconfig.get_paths()['purelib'], '/opt/app']\n"
    "bad = [os.path.join(d, n) for root in roots for d, _, names in os.walk(root)\n"
    "       for n in names if n.endswith('.py')\n"
    "       and not os.path.exists(u.cache_from_source(os.path.join(d, n)))]\n"
    "compiled = []\n"
    "def hook(event, args):\n"
    "    if event == 'compile' and len(args) > 1 and str(args[1]).endswith('.py'):\n"
    "        compiled.append(args[1])\n"
    "sys.addaudithook(hook)\n"
    "import importlib, contextlib, io\n"
    "for module, name in [('migrator.cli', 'main'), ('backup.cli', 'backup_main'),\n"
    "                     ('backup.cli', 'restore_main'), ('cleaner.cli', 'main'),\n"
    "                     ('cleaner.status_cli', 'main')]:\n"
    "    command = getattr(importlib.import_module(module), name)\n"
    "    for args in (['--help'], ['--no-such-option']):\n"
    "        with contextlib.redirect_stdout(io.StringIO()), \\\n"
    "                contextlib.redirect_stderr(io.StringIO()), \\\n"
    "                contextlib.suppress(SystemExit):\n"
    "            command.main(args, prog_name=module)\n"
    "print({'without bytecode': bad, 'compiled at start': compiled})\n"
    "sys.exit(1 if bad or compiled else 0)\n"
)


def test_every_shipped_module_has_bytecode_and_help_compiles_nothing(images: Images) -> None:
    for step in STEPS:
        run = run_container(
            step, images[step], ["-c", _NO_COMPILE], ["--entrypoint", "python3"], network="none"
        )
        assert run.exit_code == 0, (step, run.output)


@pytest.mark.parametrize(
    ("step", "scripts"),
    [
        ("migrator", ["cp-migrator"]),
        ("backup", ["cp-backup", "cp-restore"]),
        ("cleaner", ["cp-cleaner", "cp-status"]),
    ],
)
def test_console_scripts_run_read_only_as_1337(
    images: Images, step: str, scripts: list[str]
) -> None:
    for script in scripts:
        run = run_container(
            step, images[step], ["--help"], ["--entrypoint", script], network="none"
        )
        assert run.exit_code == 0, run.output
        assert f"Usage: {script}" in run.stdout
        assert "Exit codes:" in run.stdout
        # --version: the package version and the git revision the image was built from.
        revision = inspect(images[step])["Config"]["Labels"]["org.opencontainers.image.revision"]
        run = run_container(
            step, images[step], ["--version"], ["--entrypoint", script], network="none"
        )
        assert run.exit_code == 0, run.output
        assert run.stdout.strip() == f"{script} {package_version()} (revision {revision})"


# -- the chain ----------------------------------------------------------------------------------


def test_chain_migrates_backs_up_and_cleans_in_cluster_with_rbac(
    installation: Cluster, images: Images, tmp_path: Path
) -> None:
    cluster = installation
    user_config = legacy.legacy_configmap()["data"][kyma.CONFIG_KEY]
    runs = run_chain(cluster, images, service_account_dir(cluster, tmp_path / "sa"))
    assert [r.exit_code for r in runs] == [0, 0, 0], explain(runs)
    for run in runs:  # in-cluster configuration, JSON logs off a terminal
        lines = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
        assert lines, run.output
        assert not [line for line in lines if line["level"] == "error"], run.output

    cr = cluster.cr()
    assert cr is not None
    assert {key: annotations_of(cr).get(key) for key in MARKS} == dict.fromkeys(MARKS, "true")
    assert "subaccountId" in user_config
    assert cr["spec"]["config"]["subaccountId"] == "1b3c5d7e-9f21-4a6b-8c0d-2e4f6a8b0c1d"

    for name in kyma.SOURCES:
        backup = cluster.configmap(kyma.BACKUP_NAMESPACE, name)
        assert backup is not None, name
        assert backups.digest_problem(backup) is None, name

    remaining = [str(obj) for obj in legacy_objects() if cluster.kube.get(legacy_path(obj))]
    assert remaining == []
    for name in MAPPINGS:
        mapping = cluster.kube.get(f"{MAPPING_PATH}/{name}")
        assert mapping is not None
        assert mapping["metadata"]["labels"]["app.kubernetes.io/managed-by"] == (
            "sap.connectivity.proxy.operator"
        )

    # A restarted Pod runs all three again: each sees its mark and changes nothing.
    version = cr["metadata"]["resourceVersion"]
    again = run_chain(cluster, images, service_account_dir(cluster, tmp_path / "sa2"))
    assert [r.exit_code for r in again] == [0, 0, 0], explain(again)
    after = cluster.cr()
    assert after is not None and after["metadata"]["resourceVersion"] == version


def _without_rule(
    roles: tuple[tuple[str, str | None], ...], matches: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """deploy/'s objects with one rule taken out of each of `roles`, named by (name,
    namespace); a namespace of None means that step's ClusterRole. The Pod's one
    ServiceAccount holds every step's roles, so a rule two steps share is missing only when it
    is taken out of both."""
    objects = copy.deepcopy(deploy_objects())
    removed = 0
    for obj in objects:
        meta = obj["metadata"]
        if (
            obj["kind"] in ("Role", "ClusterRole")
            and (meta["name"], meta.get("namespace")) in roles
        ):
            kept = [rule for rule in obj["rules"] if not matches(rule)]
            removed += len(obj["rules"]) - len(kept)
            obj["rules"] = kept
    assert removed == len(roles), "the test means to remove exactly one rule from each role"
    return objects


@pytest.mark.parametrize(
    ("roles", "rule", "failing", "verb", "resource"),
    [
        (
            # Every step reads the CR: the migrator, first, is the one that fails.
            tuple((f"cp-migration-{step}", "kyma-system") for step in STEPS),
            lambda r: r["resources"] == ["connectivityproxies"],
            "migrator",
            "get",
            "connectivityproxies",
        ),
        (
            # The cleaner lists the backups too, and the Pod has both roles.
            tuple(
                (f"cp-migration-{step}", kyma.BACKUP_NAMESPACE) for step in ("backup", "cleaner")
            ),
            lambda r: r["verbs"] == ["list"],
            "backup",
            "list",
            "configmaps",
        ),
        (
            (("cp-migration-cleaner", None),),
            lambda r: r["resources"] == ["priorityclasses"],
            "cleaner",
            "get",
            "priorityclasses",
        ),
        # Only the delete is missing (the list of Services still works): the cleaner's
        # permission preflight stops it before its first write, not a 403 halfway through.
        (
            (("cp-migration-cleaner", "kyma-system"),),
            lambda r: r["resources"] == ["services"] and r["verbs"] == ["delete"],
            "cleaner",
            "delete",
            "services",
        ),
    ],
    ids=["migrator", "backup", "cleaner-get", "cleaner-delete"],
)
def test_a_missing_permission_stops_the_chain_naming_verb_and_resource(
    installation: Cluster,
    images: Images,
    tmp_path: Path,
    roles: tuple[tuple[str, str | None], ...],
    rule: Callable[[dict[str, Any]], bool],
    failing: str,
    verb: str,
    resource: str,
) -> None:
    cluster = installation
    for obj in _without_rule(roles, rule):
        if obj["kind"] in ("Role", "ClusterRole"):
            cluster.apply([obj])
    before = cluster.cr()
    assert before is not None

    runs = run_chain(cluster, images, service_account_dir(cluster, tmp_path / "sa"))

    position = STEPS.index(failing)
    assert [r.exit_code for r in runs] == [0] * position + [1], explain(runs)
    errors = [
        json.loads(line)["msg"] for line in runs[-1].stderr.splitlines() if line.startswith("{")
    ]
    message = "\n".join(errors)
    assert f'cannot {verb} resource "{resource}"' in message, runs[-1].output
    if verb == "delete":  # found by the preflight, before any write was tried
        assert "nothing was changed" in message, runs[-1].output
        assert "kyma-system/connectivity-proxy-tunnel" in message, runs[-1].output
    else:
        assert "403" in message

    # Nothing half done: the failing step's mark is absent, and so is its work.
    marks = marks_of(cluster)
    for done in MARKS[:position]:
        assert marks.get(done) == "true"
    for undone in MARKS[position:]:
        assert undone not in marks
    if failing == "migrator":
        after = cluster.cr()
        assert after is not None
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    if failing in ("migrator", "backup"):
        for name in kyma.SOURCES:
            assert cluster.configmap(kyma.BACKUP_NAMESPACE, name) is None
    remaining = [obj for obj in legacy_objects() if cluster.kube.get(legacy_path(obj))]
    assert len(remaining) == len(legacy_objects()), "the cleaner deleted something"
    for name in MAPPINGS:  # nor handed a ServiceMapping over
        mapping = cluster.kube.get(f"{MAPPING_PATH}/{name}")
        assert mapping is not None
        assert "app.kubernetes.io/managed-by" not in (mapping["metadata"].get("labels") or {})


# -- by hand ------------------------------------------------------------------------------------


def test_cp_status_from_the_image_with_a_mounted_kubeconfig(
    installation: Cluster, images: Images, tmp_path: Path
) -> None:
    """As a person would: docker run --rm --network host -v ~/.kube:/kube:ro
    -e KUBECONFIG=/kube/config --entrypoint cp-status IMAGE -o json"""
    kubeconfig = embedded_kubeconfig(installation, tmp_path / "kube")
    extra = [
        "-v",
        f"{kubeconfig.parent}:/kube:ro",
        "-e",
        "KUBECONFIG=/kube/config",
        "--entrypoint",
        "cp-status",
    ]
    run = run_container("status", images["cleaner"], ["-o", "json"], extra)
    assert run.exit_code == 0, f"podman run {shlex.join(extra)}\n{run.output}"
    status = json.loads(run.stdout)
    text = json.dumps(status)
    assert "connectivity-proxy" in text
    table = run_container("status", images["cleaner"], [], extra)
    assert table.exit_code == 0, table.output
    assert table.stdout.strip()


def test_podman_is_usable_when_present() -> None:
    """Under CI the image tests must not silently skip: podman must be there."""
    podman_or_skip()
