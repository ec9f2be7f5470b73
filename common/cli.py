"""The thin click layer every tool shares: options, logging set-up, errors to exit codes.

Only click is imported at module level, so that `--help` stays fast; the cluster client and
the tools' cores are imported when a command runs.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TextIO, TypeVar

import click

from common.errors import EXIT_OK, EXIT_RETRY, CpError

if TYPE_CHECKING:
    from common.cluster.client import Kube
    from common.record import Outcome

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
# What an interrupted run still meant to do, unless its step tracks more (the cleaner does).
STEP_TODO = "all of this step's work (it is not marked done)"
NOTHING_CONFIRMED = "no change of this run was confirmed"


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


def connect(options: Options, tool: str) -> Kube:
    """The client for the configured cluster; logs where it goes before the first request."""
    from common.cluster.client import Kube
    from common.cluster.kubeconfig import resolve

    connection = resolve(options.kubeconfig, options.context)
    logging.getLogger(tool).info("cluster: %s", connection.describe())
    return Kube(connection, user_agent=f"cp-migration/{tool}")


class Progress(Protocol):
    """What a step that tracks its work (the cleaner) tells `run`."""

    def summary(self) -> str: ...  # "done: ... Remains: ...", for the interrupt line

    def clear_bar(self) -> None: ...  # take the progress bar off the terminal


class Interrupted(BaseException):
    """SIGTERM (the kubelet deleting the Pod) or SIGINT (Ctrl-C), raised in the main thread.
    A BaseException, so that no `except Exception` on the way swallows it."""


def _on_signal(signum: int, _frame: Any) -> None:
    import signal

    from common.cluster.client import STOPPING

    STOPPING.set()  # no request is tried again; requests in other threads end their waits

    def at_once(again: int, _frame: Any) -> None:
        # Every write is a single request: ending now leaves nothing half written.
        sys.stderr.write(f"{signal.Signals(again).name} again: exiting at once\n")
        os._exit(EXIT_RETRY)

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, at_once)
    raise Interrupted(signal.Signals(signum).name)


def run(
    tool: str,
    options: Options,
    body: Callable[[Kube], Outcome | None],
    progress: Callable[[TextIO | None], Progress] | None = None,
    remains: str = STEP_TODO,
    *,
    step: str | None = None,
) -> NoReturn:
    """Connect, run a tool's core and turn its outcome into the exit code, in this one place.
    `progress(terminal)` starts the step's progress once logging is set up (`terminal` is
    stderr on a terminal, else None); `remains` is what an interrupted run leaves undone.
    `body` returns how the run ended (common.record.Outcome; None: done). A step's run ends
    with its record (`step`: the name the record gives it; common.record.step_end): the
    termination message, the record on the CR, a Warning Event."""
    import signal
    import threading

    from common import logs, record, redact
    from common.cluster.client import STOPPING

    # Each run starts afresh, as a process of its own does (tests run many in one).
    redact.forget_all()
    STOPPING.clear()
    log_format = logs.setup(options.log_format, options.verbose)
    terminal = sys.stderr if log_format == "text" and sys.stderr.isatty() else None
    ledger = progress(terminal) if progress else None
    log = logging.getLogger(tool)
    previous = {}
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:
        previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    kube: Kube | None = None
    try:
        kube = connect(options, tool)
        if step is not None:
            from common import cr

            kube.keep(cr.CR_PATH)  # the record compares with the CR as the step saw it last
        outcome = body(kube) or record.done(f"{tool} finished")
        code = EXIT_OK
    except CpError as err:
        log.error(str(err))
        code = err.exit_code
        outcome = record.of_error(err)
    except (Interrupted, KeyboardInterrupt) as err:
        name = str(err) if isinstance(err, Interrupted) else "SIGINT"
        done = ledger.summary() if ledger else f"done: {NOTHING_CONFIRMED}. Remains: {remains}"
        # The kubelet (or the person) runs the step again; it continues from the cluster's state.
        line = (
            f"interrupted by {name}; the request in flight was finished or abandoned, "
            f"nothing is half written. {done}. Exit 1: a rerun continues"
        )
        log.error(line, extra=logs.fields(signal=name))
        code = EXIT_RETRY
        outcome = record.interrupted(line)
    except Exception as err:  # a bug or an unexpected answer: a retry may still get past it
        log.exception("unexpected failure: %s", err)
        code = EXIT_RETRY
        outcome = record.of_error(err)
    finally:
        if ledger:
            ledger.clear_bar()
    try:
        if main_thread:
            # A signal now only stops retries: the step's end is one request or two.
            for number in previous:
                signal.signal(number, lambda _signum, _frame: STOPPING.set())
        if step is not None:
            record.step_end(kube, step, outcome, f"cp-{tool}", dry_run=options.dry_run)
        else:
            record.termination_message(outcome)
    except Exception as err:  # best effort: the exit code stands
        log.warning("the end of the run could not be recorded: %s", err)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    sys.exit(code)
