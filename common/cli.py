"""The thin click layer every tool shares: options, logging set-up, errors to exit codes.

Only click is imported at module level so that `--help` stays fast; the cluster client and
the tools' cores are imported when a command actually runs.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from common.errors import EXIT_OK, EXIT_RETRY, CpError

if TYPE_CHECKING:
    from common.kube import Kube

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclass(frozen=True)
class Options:
    """The options every tool takes (each also from a CP_* environment variable)."""

    kubeconfig: str | None
    context: str | None
    dry_run: bool
    log_format: str
    verbose: int


def _option_decorators(*, dry_run: bool) -> list[Callable[[Any], Any]]:
    decorators = [
        click.option(
            "--kubeconfig",
            envvar="CP_KUBECONFIG",
            type=click.Path(dir_okay=False),
            help="Kubeconfig file. Default: $KUBECONFIG, then ~/.kube/config, then in-cluster.",
        ),
        click.option("--context", envvar="CP_CONTEXT", help="Kubeconfig context to use."),
        click.option(
            "--log-format",
            envvar="CP_LOG_FORMAT",
            type=click.Choice(["auto", "json", "text"]),
            default="auto",
            show_default=True,
            help="auto: JSON lines when stderr is not a terminal, text when it is.",
        ),
        click.option(
            "-v", "--verbose", envvar="CP_VERBOSE", count=True, help="More detail (debug logs)."
        ),
    ]
    if dry_run:
        decorators.insert(
            2,
            click.option(
                "--dry-run",
                envvar="CP_DRY_RUN",
                is_flag=True,
                help="Show the plan and change nothing.",
            ),
        )
    return decorators


def _apply(func: F, decorators: list[Callable[[Any], Any]]) -> F:
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def shared_options(func: F) -> F:
    """The options of every tool that changes the cluster."""
    return _apply(func, _option_decorators(dry_run=True))


def read_only_options(func: F) -> F:
    """The same without --dry-run, for a tool that only reads (cp-status)."""
    return _apply(func, _option_decorators(dry_run=False))


def options_from(params: dict[str, Any]) -> Options:
    return Options(
        kubeconfig=params.pop("kubeconfig"),
        context=params.pop("context"),
        dry_run=params.pop("dry_run", False),
        log_format=params.pop("log_format"),
        verbose=params.pop("verbose"),
    )


def connect(options: Options, tool: str) -> Kube:
    """The client for the configured cluster; logs where it goes before the first request."""
    from common.kube import Kube
    from common.kubeconfig import resolve

    connection = resolve(options.kubeconfig, options.context)
    logging.getLogger(tool).info("cluster: %s", connection.describe())
    return Kube(connection, user_agent=f"cp-migration/{tool}")


def run(tool: str, options: Options, body: Callable[[], int | None]) -> NoReturn:
    """Run a tool's core and turn its outcome into the exit code, in this one place."""
    from common import logs

    logs.setup(options.log_format, options.verbose)
    log = logging.getLogger(tool)
    try:
        code = body() or EXIT_OK
    except CpError as err:
        log.error(str(err))
        code = err.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        code = EXIT_RETRY
    except Exception as err:  # a bug or an unexpected answer: a retry may still get past it
        log.exception("unexpected failure: %s", err)
        code = EXIT_RETRY
    sys.exit(code)
