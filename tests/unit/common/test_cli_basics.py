"""CLI basics every tool shares (pure: no cluster): --version, the exit-code table in --help,
boolean environment values for flags, and shell completion."""

from __future__ import annotations

from typing import Any

import click
import pytest
from click.testing import CliRunner

from common import cli
from hack.devenv.cluster import REPO
from tests.support.chain import BACKUP, CLEANER, MIGRATOR, RESTORE, STATUS, Step

TOOLS = (MIGRATOR, BACKUP, RESTORE, CLEANER, STATUS)


@pytest.mark.parametrize("step", TOOLS, ids=lambda s: s.name)
def test_version_names_the_tool_the_package_version_and_the_revision(step: Step) -> None:
    result = CliRunner().invoke(
        step.command(),
        ["--version"],
        prog_name=step.name,
        env={cli.REVISION_ENV: "0123abcd"},
    )
    assert result.exit_code == 0, result.output
    assert result.output == f"{step.name} {cli.package_version()} (revision 0123abcd)\n"
    assert cli.package_version() != "unknown"


def test_the_revision_comes_from_the_checkout_without_the_image_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(cli.REVISION_ENV, raising=False)
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    found = cli.revision()
    assert found and len(found) == 40


@pytest.mark.parametrize("step", TOOLS, ids=lambda s: s.name)
def test_every_help_has_the_exit_code_table(step: Step) -> None:
    result = CliRunner().invoke(step.command(), ["--help"], prog_name=step.name)
    assert result.exit_code == 0
    table = result.output.split("Exit codes:")[1]
    codes = ["0", "1", "2"] if step is STATUS else ["0", "1", "2", "3"]
    found = [line.split()[0] for line in table.strip().splitlines()]
    assert found == codes, table
    assert "--version" in result.output


@click.command()
@cli.shared_options
def _probe(**params: Any) -> None:
    options = cli.options_from(params)
    click.echo(f"dry_run={options.dry_run} verbose={options.verbose}")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("on", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("off", False),
        ("", False),
    ],
)
def test_boolean_environment_values_for_flags(value: str, expected: bool) -> None:
    result = CliRunner().invoke(_probe, [], env={"CP_DRY_RUN": value, "CP_VERBOSE": value})
    assert result.exit_code == 0, result.output
    assert result.output == f"dry_run={expected} verbose={int(expected)}\n"


def test_cp_verbose_may_be_a_count_and_the_flag_wins() -> None:
    assert "verbose=3" in CliRunner().invoke(_probe, [], env={"CP_VERBOSE": "3"}).output
    assert "verbose=2" in CliRunner().invoke(_probe, ["-vv"], env={"CP_VERBOSE": "no"}).output


@pytest.mark.parametrize("variable", ["CP_VERBOSE", "CP_DRY_RUN"])
def test_a_value_that_is_no_boolean_is_a_usage_error_naming_the_variable(variable: str) -> None:
    result = CliRunner().invoke(_probe, [], env={variable: "maybe"})
    assert result.exit_code == 2
    assert "maybe" in result.output


@pytest.mark.parametrize("step", TOOLS, ids=lambda s: s.name)
def test_shell_completion_works_as_the_readme_says(step: Step) -> None:
    variable = "_" + step.name.upper().replace("-", "_") + "_COMPLETE"
    assert f"{variable}=bash_source {step.name}" in (REPO / "README.md").read_text()
    result = CliRunner().invoke(
        step.command(), [], prog_name=step.name, env={variable: "bash_source"}
    )
    assert result.exit_code == 0
    assert "complete -o nosort -F" in result.output
