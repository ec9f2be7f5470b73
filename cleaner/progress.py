"""Progress of long phases, and the ledger of what a run has done.

A step opens a Phase for each long piece of work (ServiceMappings handed over, legacy objects
deleted) and advances it as each item is confirmed. While it runs:

- on a terminal (text logs on a tty), a progress bar with count, total and rate, redrawn at
  most every 0.2 s, and cleared when the phase ends or a log line is written;
- otherwise (JSON lines, or text into a file), a `progress` log line at most every 2 s;
- nothing at all for a phase that ends within its first second (or 2 s off a terminal).

The same ledger says, when a signal ends a run (common.runner.execute), what was done and what
remains: the phases' counts, what the step noted as done, and what it expected still to do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

from common.logs import fields
from common.runner import NOTHING_CONFIRMED, STEP_TODO, Run

log = logging.getLogger("progress")

LINE_INTERVAL = 2.0  # seconds between progress log lines (JSON mode)
BAR_DELAY = 1.0  # a bar appears only for a phase still running after this long
BAR_INTERVAL = 0.2
BAR_WIDTH = 24

Clock = Callable[[], float]


@dataclass
class Phase:
    noun: str  # "ServiceMappings"
    done_verb: str  # "handed over"
    todo_verb: str  # "to hand over"
    total: int | None = None
    count: int = 0
    started: float = 0.0
    finished: bool = False
    _last_shown: float = 0.0
    _ledger: Ledger | None = field(default=None, repr=False)

    def advance(self, amount: int = 1) -> None:
        ledger = self._ledger
        if ledger is None:
            self.count += amount
            return
        with ledger.lock:
            self.count += amount
            ledger.show(self)

    def set_total(self, total: int) -> None:
        self.total = total

    def rate(self, now: float) -> float:
        elapsed = now - self.started
        return self.count / elapsed if elapsed > 0 else 0.0

    def done_text(self) -> str:
        of = f" of {self.total}" if self.total is not None else ""
        return f"{self.count}{of} {self.noun} {self.done_verb}"

    def todo_text(self) -> str | None:
        if self.total is None:
            return None if self.finished else f"the rest of the {self.noun} {self.todo_verb}"
        left = self.total - self.count
        return f"{left} {self.noun} {self.todo_verb}" if left > 0 else None


class Ledger:
    """What this run has done and still means to do; one per run (Run.progress, see `start`)."""

    def __init__(self, clock: Clock = time.monotonic, stream: TextIO | None = None) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.phases: list[Phase] = []
        self.notes: list[str] = []  # what was done, in order ("deleted the legacy webhook")
        self.expected: list[str] = []  # what remains after the phases ("mark the CR cleaned")
        self.bar_stream = stream  # set: draw bars there (a terminal); None: log lines
        self._bar_visible = False
        self._last_line = 0.0

    # -- what steps call ---------------------------------------------------------------------

    @contextmanager
    def phase(
        self, noun: str, done_verb: str, todo_verb: str, total: int | None = None
    ) -> Iterator[Phase]:
        phase = Phase(noun, done_verb, todo_verb, total, started=self.clock(), _ledger=self)
        with self.lock:
            # A step that starts over (re-planning) counts again from the start: an item done
            # in the earlier attempt is counted again (as already done) in this one.
            self.phases = [p for p in self.phases if p.noun != noun] + [phase]
        try:
            yield phase
            phase.finished = True
        finally:
            with self.lock:
                self._end(phase)

    def note(self, done: str) -> None:
        with self.lock:
            self.notes.append(done)

    def expect(self, *todo: str) -> None:
        with self.lock:
            self.expected += [item for item in todo if item not in self.expected]

    def fulfil(self, todo: str) -> None:
        with self.lock:
            if todo in self.expected:
                self.expected.remove(todo)

    # -- the interrupt line ------------------------------------------------------------------

    def summary(self) -> str:
        with self.lock:
            done = [p.done_text() for p in self.phases if p.count or p.finished] + self.notes
            remains = [text for p in self.phases if (text := p.todo_text())] + self.expected
        done_text = "; ".join(done) if done else NOTHING_CONFIRMED
        remains_text = "; ".join(remains) if remains else "nothing this run knew of"
        return f"done: {done_text}. Remains: {remains_text}"

    # -- drawing -----------------------------------------------------------------------------

    def show(self, phase: Phase) -> None:
        now = self.clock()
        if self.bar_stream is not None:
            if now - phase.started < BAR_DELAY or now - phase._last_shown < BAR_INTERVAL:
                return
            phase._last_shown = now
            self.bar_stream.write("\r\033[K" + bar(phase, now))
            self.bar_stream.flush()
            self._bar_visible = True
            return
        # At most one line every LINE_INTERVAL for the whole run, whichever phase advances.
        since = max(self._last_line, phase.started)
        if now - since < LINE_INTERVAL:
            return
        self._last_line = now
        log.info(
            f"{phase.noun}: {phase.done_text()}",
            extra=fields(
                phase=f"{phase.noun} {phase.done_verb}",
                done=phase.count,
                total=phase.total,
                rate=round(phase.rate(now), 1),
            ),
        )

    def clear_bar(self) -> None:
        """Before a log line: take the bar off the terminal (the next advance redraws it)."""
        if self._bar_visible and self.bar_stream is not None:
            self.bar_stream.write("\r\033[K")
            self.bar_stream.flush()
            self._bar_visible = False

    def _end(self, _phase: Phase) -> None:
        # The step's own summary line says how the phase ended; the bar just goes.
        self.clear_bar()


def bar(phase: Phase, now: float) -> str:
    total = phase.total
    rate = phase.rate(now)
    if total:
        filled = min(BAR_WIDTH, BAR_WIDTH * phase.count // total)
        drawn = "#" * filled + "-" * (BAR_WIDTH - filled)
        eta = f", about {int((total - phase.count) / rate)}s left" if rate > 0 else ""
        return f"[{drawn}] {phase.count}/{total} {phase.noun} {phase.done_verb} ({rate:.0f}/s{eta})"
    return f"{phase.count} {phase.noun} {phase.done_verb} ({rate:.0f}/s)"


def start(run: Run) -> Ledger:
    """The ledger of a cleaner run, once logging is set up: kept in `run` for the interrupt
    line, bars drawn on `run.terminal` (None: log lines)."""
    ledger = Ledger(stream=run.terminal)
    ledger.expect(STEP_TODO)
    for handler in logging.getLogger().handlers:
        install_log_filter(handler, ledger)
    run.progress = ledger
    return ledger


def install_log_filter(handler: logging.Handler, ledger: Ledger) -> None:
    """A log line first takes the bar off the terminal, so that the two never mix."""

    def before_log_line(_record: Any) -> bool:
        ledger.clear_bar()
        return True

    handler.addFilter(before_log_line)
