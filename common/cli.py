"""The thin click layer every tool shares: options, `connect`, and `run_step`, which hands a
run to common.runner (where its outcome becomes the exit code) and exits with that code.

Only click is imported at module level, so that `--help` stays fast; the cluster client and
the tools' cores are imported when a command runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from common.errors import EXIT_OK
from common.runner import STEP_TODO

if TYPE_CHECKING:
    from common.cluster.client import Kube
    from common.runner import Run

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
EXIT_CODES = """\b
Exit codes:
  0  done, or nothing to do
  1  failed; a retry may fix it (an init container is retried by the kubelet)
  2  usage: a wrong option or environment variable
  3  refused: invalid or unsafe input; nothing was changed
"""
PACKAGE = "cp-migration"
REVISION_ENV = "CP_MIGRATION_REVISION"  # set in the images from the REVISION build argument
_TRUE = ("1", "true", "yes", "on", "y", "t")
_FALSE = ("", "0", "false", "no", "off", "n", "f")


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "unknown"


def revision() -> str | None:
    """The git revision: from the image's environment, or from a source checkout."""
    found = os.environ.get(REVISION_ENV, "").strip()
    if found and found != "unknown":
        return found
    checkout = Path(__file__).resolve().parents[1]
    if not (checkout / ".git").exists():
        return None
    import subprocess

    try:
        git = ["git", "-C", str(checkout), "rev-parse", "HEAD"]
        return (
            subprocess.run(
                git, capture_output=True, text=True, timeout=5, check=False
            ).stdout.strip()
            or None
        )
    except OSError:
        return None


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        found = revision()
        suffix = f" (revision {found})" if found else ""
        click.echo(f"{ctx.find_root().info_name or PACKAGE} {package_version()}{suffix}")
        ctx.exit(EXIT_OK)


def _verbosity(ctx: click.Context, param: click.Parameter, value: int) -> int:
    """-v counts; CP_VERBOSE may also be a boolean, so that an init container's
    `CP_VERBOSE: "true"` is not a usage error."""
    raw = os.environ.get("CP_VERBOSE", "").strip().lower()
    if value or raw in _FALSE:
        return value
    if raw in _TRUE or raw.isdigit():
        return 1 if raw in _TRUE else int(raw)
    raise click.BadParameter(
        f"CP_VERBOSE={raw!r} is neither a boolean (true/false, 1/0, yes/no, on/off) nor a count",
        ctx=ctx,
        param=param,
    )


@dataclass(frozen=True)
class Options:
    """The options every tool takes (each also from a CP_* environment variable)."""

    kubeconfig: str | None
    context: str | None
    dry_run: bool
    log_format: str
    verbose: int


def _options(func: F, *, dry_run: bool) -> F:
    dry_run_option = click.option(
        "--dry-run",
        envvar="CP_DRY_RUN",
        is_flag=True,
        help="Show the plan and change nothing. Env CP_DRY_RUN: true/false, yes/no, 1/0.",
    )
    decorators = [
        click.option(
            "--kubeconfig",
            envvar="CP_KUBECONFIG",
            type=click.Path(dir_okay=False),
            help="Kubeconfig file. Default: $KUBECONFIG, then ~/.kube/config, then in-cluster.",
        ),
        click.option("--context", envvar="CP_CONTEXT", help="Kubeconfig context to use."),
        *([dry_run_option] if dry_run else []),
        click.option(
            "--log-format",
            envvar="CP_LOG_FORMAT",
            type=click.Choice(["auto", "json", "text"]),
            default="auto",
            show_default=True,
            help="auto: JSON lines when stderr is not a terminal, text when it is.",
        ),
        click.option(
            "-v",
            "--verbose",
            count=True,
            callback=_verbosity,
            help="More detail (debug logs). Env CP_VERBOSE: true/false, yes/no, 1/0 or a count.",
        ),
        click.option(
            "--version",
            is_flag=True,
            expose_value=False,
            is_eager=True,
            callback=_show_version,
            help="Show the version (and the git revision) and exit.",
        ),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def shared_options(func: F) -> F:
    """The options of every tool that changes the cluster."""
    return _options(func, dry_run=True)


def read_only_options(func: F) -> F:
    """The same without --dry-run, for a tool that only reads (cp-status)."""
    return _options(func, dry_run=False)


def options_from(params: dict[str, Any]) -> Options:
    return Options(
        kubeconfig=params.pop("kubeconfig"),
        context=params.pop("context"),
        dry_run=params.pop("dry_run", False),
        log_format=params.pop("log_format"),
        verbose=params.pop("verbose"),
    )


def connect(options: Options, run: Run) -> Kube:
    """The client for the configured cluster, kept in `run`; logs where it goes before the
    first request."""
    from common.cluster.client import Kube
    from common.cluster.kubeconfig import resolve

    connection = resolve(options.kubeconfig, options.context)
    run.log.info("cluster: %s", connection.describe())
    run.kube = Kube(connection, user_agent=run.user_agent, stop=run.stop)
    for path in run.keep:
        run.kube.keep(path)
    return run.kube


def run_step(
    run: Run, options: Options, body: Callable[[Run], int | None], remains: str = STEP_TODO
) -> NoReturn:
    """Run a tool's core (common.runner.execute) and exit with its outcome's code."""
    from common.runner import execute

    outcome = execute(
        run, body, log_format=options.log_format, verbosity=options.verbose, remains=remains
    )
    sys.exit(outcome.exit_code)
