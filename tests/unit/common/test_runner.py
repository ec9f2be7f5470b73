"""Pure unit: the step runner's outcome and its step-end spot (common/runner.py)."""

from __future__ import annotations

import os
import signal

from common.errors import EXIT_OK, EXIT_RETRY
from common.runner import Outcome, Run, execute


def test_a_signal_during_the_step_end_hooks_stops_their_retries_and_keeps_the_outcome() -> None:
    """The kubelet's SIGTERM may arrive while the record is being written: the step's work is
    done, so the exit code stays 0 (never the default signal death), and the hook's requests
    see the stop flag."""
    run = Run("migrator")
    seen: list[bool] = []

    def hook(ended: Run, outcome: Outcome) -> None:
        assert outcome.exit_code == EXIT_OK
        os.kill(os.getpid(), signal.SIGTERM)
        seen.append(ended.stop.is_set())

    run.at_end.append(hook)
    before = signal.getsignal(signal.SIGTERM)
    outcome = execute(run, lambda _run: EXIT_OK)
    assert outcome == Outcome(EXIT_OK)
    assert seen == [True]
    assert signal.getsignal(signal.SIGTERM) is before  # the handlers are put back


def test_a_signal_during_the_step_is_an_interrupted_exit_1_and_the_hooks_still_run() -> None:
    run = Run("backup")
    ended: list[Outcome] = []
    run.at_end.append(lambda _run, outcome: ended.append(outcome))

    def body(_run: Run) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        return EXIT_OK  # never reached: the signal ends the core

    outcome = execute(run, body)
    assert outcome == Outcome(EXIT_RETRY, interrupted="SIGTERM")
    assert ended == [outcome]
    assert run.stop.is_set()
