"""The thin click layer every tool shares: options, logging set-up, errors to exit codes.

Only click is imported at module level so that `--help` stays fast; the cluster client and
the tools' cores are imported when a command actually runs.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from common.errors import EXIT_OK, EXIT_RETRY, CpError

if TYPE_CHECKING:
    from common.kube import Kube

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# The epilog of every tool that changes the cluster (`@click.command(epilog=EXIT_CODES)`).
EXIT_CODES = """\b
Exit codes:
  0  done, or nothing to do
  1  failed; a retry may fix it (an init container is retried by the kubelet)
  2  usage: a wrong option or environment variable
  3  refused: invalid or unsafe input; nothing was changed
"""
# cp-status only reads.
STATUS_EXIT_CODES = """\b
Exit codes:
  0  the status was read (whatever the state of the migration)
  1  the cluster cannot be reached, or nothing could be read
  2  usage: a wrong option or environment variable
"""
PACKAGE = "cp-migration"
# Set in the images (Dockerfile.*: ENV from the REVISION build argument, as the OCI label).
REVISION_ENV = "CP_MIGRATION_REVISION"
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
        answer = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except OSError:
        return None
    return answer.stdout.strip() or None


def version_text(prog: str) -> str:
    found = revision()
    return f"{prog} {package_version()}" + (f" (revision {found})" if found else "")


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(version_text(ctx.find_root().info_name or PACKAGE))
    ctx.exit(EXIT_OK)


def _verbosity(ctx: click.Context, param: click.Parameter, value: int) -> int:
    """-v counts; CP_VERBOSE may be a count or a boolean (true/false, 1/0, yes/no, on/off),
    so that an init container's `CP_VERBOSE: "true"` is not a usage error."""
    if value or "CP_VERBOSE" not in os.environ:
        return value
    raw = os.environ["CP_VERBOSE"].strip()
    if raw.lower() in _FALSE:
        return 0
    if raw.lower() in _TRUE:
        return 1
    if raw.isdigit():
        return int(raw)
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
    if dry_run:
        decorators.insert(
            2,
            click.option(
                "--dry-run",
                envvar="CP_DRY_RUN",
                is_flag=True,
                help="Show the plan and change nothing. Env CP_DRY_RUN: true/false, yes/no, 1/0.",
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


class Interrupted(BaseException):
    """SIGTERM (the kubelet deleting the Pod) or SIGINT (Ctrl-C), raised in the main thread.
    A BaseException, so that no `except Exception` on the way swallows it."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


def _on_signal(signum: int, _frame: Any) -> None:
    import signal

    # A second signal while the first is handled (the requests in flight finishing) ends the
    # process at once; nothing half-written can result, every write is a single request.
    for again in (signal.SIGTERM, signal.SIGINT):
        signal.signal(again, _on_second_signal)
    raise Interrupted(signal.Signals(signum).name)


def _on_second_signal(signum: int, _frame: Any) -> None:
    import signal

    sys.stderr.write(f"{signal.Signals(signum).name} again: exiting at once\n")
    sys.stderr.flush()
    os._exit(EXIT_RETRY)


def _handle_signals() -> Callable[[], None]:
    """Install the handlers; returns what restores the previous ones."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)

    return restore


def run(tool: str, options: Options, body: Callable[[], int | None]) -> NoReturn:
    """Run a tool's core and turn its outcome into the exit code, in this one place."""
    from common import logs, progress, redact

    # Each run starts remembering credentials afresh, as a process of its own does (tests run
    # many tools in one process; one run must not rely on what an earlier one masked).
    redact.forget_all()
    log_format = logs.setup(options.log_format, options.verbose)
    terminal = log_format == "text" and sys.stderr.isatty()
    ledger = progress.reset(sys.stderr if terminal else None)
    ledger.expect(progress.STEP_TODO)
    for handler in logging.getLogger().handlers:
        progress.install_log_filter(handler)
    log = logging.getLogger(tool)
    restore = _handle_signals()
    try:
        try:
            code = body() or EXIT_OK
        except CpError as err:
            log.error(str(err))
            code = err.exit_code
        except (Interrupted, KeyboardInterrupt) as err:
            name = err.signal_name if isinstance(err, Interrupted) else "SIGINT"
            # One line: what this run did and what a rerun will do; exit 1, the kubelet (or the
            # person) runs the step again and it continues from what the cluster shows.
            log.error(
                f"interrupted by {name}; the request in flight was finished or abandoned, "
                f"nothing is half written. {ledger.summary()}. Exit 1: a rerun continues",
                extra=logs.fields(signal=name),
            )
            code = EXIT_RETRY
        except Exception as err:  # a bug or an unexpected answer: a retry may still get past it
            log.exception("unexpected failure: %s", err)
            code = EXIT_RETRY
    finally:
        ledger.clear_bar()
        restore()
    sys.exit(code)
