"""One run of a tool: its state (`Run`), and the step runner, the one place a run's outcome
becomes an exit code. No click here: common/cli.py is the click glue around it.

A run's state is one object passed down, not module globals: the stop flag a signal sets
(the cluster client's retries and waits watch it), the redaction registry (values masked in
every log line and diff), the progress of a step that tracks its work (the cleaner's ledger),
and the client once connected.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from common import logs, redact
from common.errors import EXIT_OK, EXIT_RETRY, CpError

if TYPE_CHECKING:
    from common.cluster.client import Kube

# What an interrupted run still meant to do, unless its step tracks more (the cleaner does).
STEP_TODO = "all of this step's work (it is not marked done)"
NOTHING_CONFIRMED = "no change of this run was confirmed"


class Progress(Protocol):
    """What a step that tracks its work (the cleaner) tells the runner."""

    def summary(self) -> str: ...  # "done: ... Remains: ...", for the interrupt line

    def clear_bar(self) -> None: ...  # take the progress bar off the terminal


@dataclass
class Run:
    """The state of one run of one tool; created by the tool's cli.py, passed to its core."""

    tool: str  # "migrator", "backup", "restore", "cleaner", "status"
    # Set when a signal ends the run: no request is tried again, and waits end at once.
    stop: threading.Event = field(default_factory=threading.Event)
    secrets: redact.Registry = field(default_factory=redact.Registry)
    # Where a progress bar may be drawn: stderr on a terminal with text logs, else None.
    terminal: Any = None
    progress: Progress | None = None  # set by a step that tracks its work
    kube: Kube | None = None  # set once connected (None when connecting failed)
    # Paths whose latest object the client remembers from its first request on (Kube.keep),
    # for a step-end hook that compares with what the run last saw.
    keep: list[str] = field(default_factory=list)
    # What the run says it did (its summary line), and why a person should look although it
    # succeeded (a reason code; None: nothing to look at). Set by the tool's body.
    summary: str = ""
    attention: str | None = None
    # Run at the end of the step with its outcome (see step_ended).
    at_end: list[Callable[[Run, Outcome], None]] = field(default_factory=list)

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(self.tool)

    @property
    def user_agent(self) -> str:
        """How the run's requests name it (apiserver audit logs; the benchmark counts by it)."""
        return user_agent(self.tool)


def user_agent(tool: str) -> str:
    return f"cp-migration/{tool}"


@dataclass(frozen=True)
class Outcome:
    """How a run ended, before the process exits with `exit_code`."""

    exit_code: int
    error: BaseException | None = None  # the CpError, or the unexpected exception
    interrupted: str | None = None  # the signal's name when a signal ended the run


class Interrupted(BaseException):
    """SIGTERM (the kubelet deleting the Pod) or SIGINT (Ctrl-C), raised in the main thread.
    A BaseException, so that no `except Exception` on the way swallows it."""


def execute(
    run: Run,
    body: Callable[[Run], int | None],
    *,
    log_format: str = "auto",
    verbosity: int = 0,
    remains: str = STEP_TODO,
) -> Outcome:
    """Run a tool's core and turn how it ended into an Outcome, in this one place; then the
    step ends (step_ended). `remains` is what an interrupted run leaves undone when the step
    tracks no progress of its own."""
    import signal

    redact.activate(run.secrets)
    chosen = logs.setup(log_format, verbosity)
    run.terminal = sys.stderr if chosen == "text" and sys.stderr.isatty() else None
    previous = {}
    if threading.current_thread() is threading.main_thread():
        handler = _signal_handler(run)
        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            outcome = Outcome(body(run) or EXIT_OK)
        except CpError as err:
            run.log.error(str(err))
            outcome = Outcome(err.exit_code, error=err)
        except (Interrupted, KeyboardInterrupt) as err:
            name = str(err) if isinstance(err, Interrupted) else "SIGINT"
            done = (
                run.progress.summary()
                if run.progress
                else f"done: {NOTHING_CONFIRMED}. Remains: {remains}"
            )
            # The kubelet (or the person) runs the step again; it continues from the cluster's
            # state.
            run.log.error(
                f"interrupted by {name}; the request in flight was finished or abandoned, "
                f"nothing is half written. {done}. Exit 1: a rerun continues",
                extra=logs.fields(signal=name),
            )
            outcome = Outcome(EXIT_RETRY, interrupted=name)
        except Exception as err:  # a bug or an unexpected answer: a retry may still get past it
            run.log.exception("unexpected failure: %s", err)
            outcome = Outcome(EXIT_RETRY, error=err)
        finally:
            if run.progress:
                run.progress.clear_bar()
        if previous and outcome.interrupted is None:
            # The step's work is over and its outcome known: a signal now only stops the
            # step-end hooks' retries (a second one exits at once), so the exit code stays true.
            for number in previous:
                signal.signal(number, _ending_handler(run))
        step_ended(run, outcome)
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
    return outcome


def step_ended(run: Run, outcome: Outcome) -> None:
    """THE step-end spot: every run of every tool passes here exactly once, after its outcome
    is known and before the process exits with outcome.exit_code. The hooks in `run.at_end`
    run here with the outcome and the run (`run.kube` is None when connecting failed), for
    example a record of the run written to the cluster. A hook that fails is logged and never
    changes the exit code."""
    for hook in run.at_end:
        try:
            hook(run, outcome)
        except Exception as err:
            run.log.warning("a step-end hook failed: %s", err)


def _exit_at_once(again: int, _frame: Any) -> None:
    import signal

    # Every write is a single request: ending now leaves nothing half written.
    sys.stderr.write(f"{signal.Signals(again).name} again: exiting at once\n")
    os._exit(EXIT_RETRY)


def _stop_and_arm(run: Run) -> None:
    """A first signal: no request is tried again, requests in other threads end their waits,
    and a second signal exits at once."""
    import signal

    run.stop.set()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, _exit_at_once)


def _signal_handler(run: Run) -> Callable[[int, Any], None]:
    """While the step works: stop, and end its core with Interrupted."""
    import signal

    def on_signal(signum: int, _frame: Any) -> None:
        _stop_and_arm(run)
        raise Interrupted(signal.Signals(signum).name)

    return on_signal


def _ending_handler(run: Run) -> Callable[[int, Any], None]:
    """While the step-end hooks run: stop their retries; the outcome already stands."""

    def on_signal(_signum: int, _frame: Any) -> None:
        _stop_and_arm(run)

    return on_signal
