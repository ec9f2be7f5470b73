"""Pure units: progress of long phases (a bar on a terminal, a log line at most every 2 s
otherwise, nothing for short runs) and the ledger behind the interrupt line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from cleaner import progress
from common import logs


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.setup("json", 0, stream)
    yield stream
    logging.getLogger().handlers[:] = []


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_mode_logs_progress_at_most_every_two_seconds(log_stream: io.StringIO) -> None:
    clock = FakeClock()
    ledger = progress.Ledger(clock, None)
    with ledger.phase("ServiceMappings", "handed over", "to hand over", total=2000) as phase:
        for _ in range(2000):
            clock.now += 0.005  # 200 per second: 10 s in all
            phase.advance()
    lines = [line for line in json_lines(log_stream) if line["logger"] == "progress"]
    # one every 2 s during the 10 s
    assert 4 <= len(lines) <= 5, lines
    counts = [int(str(line["done"])) for line in lines]
    assert counts == sorted(counts)
    assert all(line["total"] == 2000 for line in lines)
    assert 150 <= float(str(lines[0]["rate"])) <= 250
    assert "phase" in lines[0]


def test_a_short_phase_prints_nothing(log_stream: io.StringIO) -> None:
    clock = FakeClock()
    ledger = progress.Ledger(clock, None)
    with ledger.phase("legacy object(s)", "deleted", "to delete", total=50) as phase:
        for _ in range(50):
            clock.now += 0.01
            phase.advance()
    assert log_stream.getvalue() == ""


def test_on_a_terminal_a_bar_with_count_total_and_rate_then_cleared() -> None:
    clock = FakeClock()
    terminal = Terminal()
    ledger = progress.Ledger(clock, terminal)
    with ledger.phase("ServiceMappings", "handed over", "to hand over", total=1000) as phase:
        for _ in range(1000):
            clock.now += 0.003
            phase.advance()
    drawn = terminal.getvalue()
    assert "\r" in drawn
    assert "/1000 ServiceMappings handed over" in drawn
    assert "/s" in drawn and "left" in drawn
    assert drawn.endswith("\r\033[K"), "the bar is cleared when the phase ends"
    # redrawn at most every 0.2 s of a 3 s phase, starting after 1 s
    assert 5 <= drawn.count("\033[K[") <= 11


def test_a_short_phase_draws_no_bar() -> None:
    clock = FakeClock()
    terminal = Terminal()
    ledger = progress.Ledger(clock, terminal)
    with ledger.phase("legacy object(s)", "deleted", "to delete", total=40) as phase:
        for _ in range(40):
            clock.now += 0.01
            phase.advance()
    assert terminal.getvalue() in ("", "\r\033[K")
    assert "ServiceMappings" not in terminal.getvalue() and "deleted" not in terminal.getvalue()


def test_a_log_line_takes_the_bar_off_the_terminal_first() -> None:
    clock = FakeClock()
    terminal = Terminal()
    logs.setup("text", 0, terminal)
    try:
        ledger = progress.Ledger(clock, terminal)
        for handler in logging.getLogger().handlers:
            progress.install_log_filter(handler, ledger)
        with ledger.phase("ServiceMappings", "handed over", "to hand over", total=10) as phase:
            clock.now += 2
            phase.advance()
            logging.getLogger("cleaner").info("deleted: something")
    finally:
        logging.getLogger().handlers[:] = []
    drawn = terminal.getvalue()
    assert "\r\033[KINFO    cleaner: deleted: something" in drawn


def test_the_summary_says_what_was_done_and_what_remains() -> None:
    ledger = progress.Ledger(FakeClock(), None)
    ledger.expect("the mark connectivityproxy.sap.com/cleaned on kyma-system/connectivity-proxy")
    with ledger.phase("legacy object(s)", "deleted", "to delete", total=45) as deletions:
        deletions.advance()
        ledger.note("validatingwebhookconfigurations webhook-secret deleted first")
        with (
            pytest.raises(KeyboardInterrupt),
            ledger.phase("ServiceMappings", "handed over", "to hand over") as mappings,
        ):
            mappings.set_total(2000)
            mappings.advance(259)
            raise KeyboardInterrupt
    summary = ledger.summary()
    assert summary.startswith("done: 1 of 45 legacy object(s) deleted; 259 of 2000 ServiceMappings")
    assert "webhook-secret deleted first" in summary
    assert (
        "Remains: 44 legacy object(s) to delete; 1741 ServiceMappings to hand over; the mark"
        in (summary)
    )


def test_an_empty_ledger_says_so() -> None:
    summary = progress.Ledger(FakeClock(), None).summary()
    assert summary == "done: no change of this run was confirmed. Remains: nothing this run knew of"
