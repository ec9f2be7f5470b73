"""The record's rules as a pure function (common.record.changes), its outcomes from errors,
its one line, and the termination message (README "Fleet view")."""

from __future__ import annotations

from pathlib import Path

import pytest

from common import kyma, reasons, record, redact
from common.errors import (
    ApiError,
    ConnectionFailed,
    RefusedError,
    RetryableError,
    StaleView,
    UsageError,
)

T0, T1 = "2026-12-06T07:00:00Z", "2026-12-06T07:05:00Z"
BLOCKED = record.Outcome(record.BLOCKED, reasons.SHARED_MODE_SECRET_MISSING, "no Secret")
DONE = record.done("migrated")


def record_of(step: str, outcome: record.Outcome, since: str = T0) -> dict[str, str]:
    found = record.changes({}, step, outcome, since)
    assert found is not None
    return found


def test_a_first_record_has_every_field_and_since_now() -> None:
    assert record.changes({"other": "x"}, "migrator", BLOCKED, T0) == {
        kyma.ANNOTATION_STEP: "migrator",
        kyma.ANNOTATION_RESULT: "blocked",
        kyma.ANNOTATION_REASON: "SharedModeSecretMissing",
        kyma.ANNOTATION_MESSAGE: "no Secret",
        kyma.ANNOTATION_SINCE: T0,
    }


def test_nothing_changed_writes_nothing_and_since_stays() -> None:
    now = record_of("migrator", BLOCKED)
    assert record.changes(now, "migrator", BLOCKED, T1) is None
    # Another message, same cause: only the message, since stays.
    other = record.Outcome(BLOCKED.result, BLOCKED.reason, "still no Secret")
    assert record.changes(now, "migrator", other, T1) == {
        kyma.ANNOTATION_MESSAGE: "still no Secret"
    }


def test_a_finished_chain_run_again_writes_nothing() -> None:
    finished = record_of("cleaner", DONE)
    for step in record.CHAIN:
        assert record.changes(finished, step, record.done("nothing to do"), T1) is None


def test_done_of_an_earlier_step_does_not_hide_a_later_steps_record() -> None:
    blocked = record_of(
        "backup", record.Outcome("blocked", reasons.CONFIG_CHANGED_AFTER_MIGRATION, "drift")
    )
    assert record.changes(blocked, "migrator", record.done("nothing to do"), T1) is None
    moved = record.changes(blocked, "backup", record.done("backed up"), T1)
    assert moved and moved[kyma.ANNOTATION_RESULT] == "done"
    assert moved[kyma.ANNOTATION_SINCE] == T1


def test_attention_stays_until_its_own_step_clears_it() -> None:
    orphaned = record_of("migrator", record.attention(reasons.ORPHANED_LEGACY_CONFIG, "left alone"))
    for step in ("backup", "cleaner"):
        assert record.changes(orphaned, step, record.done("nothing to do"), T1) is None
    assert (
        record.changes(
            orphaned, "migrator", record.attention(reasons.ORPHANED_LEGACY_CONFIG, "left alone"), T1
        )
        is None
    )
    cleared = record.changes(orphaned, "migrator", record.done("migrated"), T1)
    assert cleared and cleared[kyma.ANNOTATION_RESULT] == "done"


def test_since_stays_while_result_and_reason_stay_though_the_step_moves() -> None:
    waiting = record_of("migrator", record.Outcome("waiting", reasons.FORBIDDEN, "403"))
    moved = record.changes(
        waiting, "backup", record.Outcome("waiting", reasons.FORBIDDEN, "403 again"), T1
    )
    assert moved and moved[kyma.ANNOTATION_SINCE] == T0
    assert moved[kyma.ANNOTATION_STEP] == "backup"


def test_outcomes_of_errors() -> None:
    cases = {
        RefusedError("x", reason=reasons.INVALID_CONFIGURATION): (
            "blocked",
            "InvalidConfiguration",
        ),
        RefusedError("x"): ("blocked", "Refused"),
        UsageError("x"): ("blocked", "InvalidUsage"),
        RetryableError("x"): ("waiting", "RetryableFailure"),
        ConnectionFailed("x"): ("waiting", "ApiserverUnreachable"),
        StaleView("x"): ("waiting", "Conflict"),
        ApiError("GET", "/p", 403, "Forbidden", "no", {}): ("waiting", "Forbidden"),
        ApiError("GET", "/p", 401, "Unauthorized", "no", {}): ("waiting", "Unauthorized"),
        ApiError("GET", "/p", 500, "InternalError", "no", {}): ("waiting", "ApiserverError"),
        ValueError("bug"): ("waiting", "UnexpectedError"),
    }
    for err, (result, reason) in cases.items():
        outcome = record.of_error(err)
        assert (outcome.result, outcome.reason) == (result, reason), err
        assert outcome.reason in reasons.ALL


def test_the_message_is_one_redacted_line_of_at_most_1_kib() -> None:
    redact.remember("s3cr3t-value-123")
    err = RefusedError("refused: s3cr3t-value-123", details=["one", "two"])
    outcome = record.of_error(err)
    assert outcome.message == "refused: <redacted>; one; two"
    long = record.done("ä" * 2000)
    assert len(long.message.encode()) <= record.MAX_MESSAGE_BYTES
    assert "\n" not in long.message


def test_the_termination_message(tmp_path: Path) -> None:
    target = tmp_path / "termination-log"
    record.termination_message(BLOCKED, {record.TERMINATION_LOG_ENV: str(target)})
    assert target.read_text() == "SharedModeSecretMissing: no Secret\n"


def test_no_termination_log_outside_a_container(monkeypatch: pytest.MonkeyPatch) -> None:
    if Path(record.TERMINATION_LOG).exists():
        pytest.skip(f"{record.TERMINATION_LOG} exists here (inside a container)")
    record.termination_message(BLOCKED, {})
    assert not Path(record.TERMINATION_LOG).exists()
