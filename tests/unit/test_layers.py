"""Pure unit: the layer rules of hack/layers.py (run by `make lint`) hold for this tree, and a
deliberate violation of each makes the check fail, naming it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hack import layers
from hack.devenv.cluster import REPO

VIOLATIONS = [
    ("backup/plan.py", "import kubernetes\n", "the plan imports kubernetes"),
    ("cleaner/plan.py", "from common.cluster import transport\nimport kubernetes.client\n", "plan"),
    (
        "migrator/core.py",
        "from cleaner import plan as other\n",
        "the tool migrator imports cleaner",
    ),
    ("common/logs.py", "import backup.core\n", "common imports the tool backup"),
    ("common/cluster/client.py", "from common import kyma\n", "common/cluster imports common.kyma"),
    ("common/cluster/transport.py", 'NAMESPACE = "kyma-system"\n', "common/cluster names Kyma"),
    ("common/diff.py", "import click\n", "imports click; only the cli modules may"),
    ("cleaner/core.py", "from common.cli import EXIT_CODES\nimport click\n", "imports click"),
    ("tests/unit/test_x.py", "from common import cr as crnames\n", "common's modules keep their"),
    ("hack/tool.py", "from tests.support import chain\n", "hack/ imports nothing from tests/"),
]


def _copy(tmp_path: Path) -> Path:
    for package in layers.PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package)
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    (tmp_path / "tests" / "unit" / "test_x.py").write_text('"""A test."""\n')
    (tmp_path / "hack").mkdir()
    (tmp_path / "hack" / "tool.py").write_text('"""A dev tool."""\n')
    return tmp_path


def test_this_tree_keeps_the_layer_rules() -> None:
    assert layers.check(REPO) == []


@pytest.mark.parametrize(("path", "line", "named"), VIOLATIONS, ids=[v[0] for v in VIOLATIONS])
def test_a_violation_makes_the_check_fail_naming_it(
    tmp_path: Path, path: str, line: str, named: str
) -> None:
    root = _copy(tmp_path)
    target = root / path
    target.write_text(target.read_text() + "\n" + line)
    problems = layers.check(root)
    assert any(named in problem and path.rpartition("/")[0] in problem for problem in problems), (
        problems
    )
    result = subprocess.run(
        [sys.executable, "-m", "hack.layers", str(root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert named in result.stderr
