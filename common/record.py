"""The record of where a cluster's migration stands and why (README "Fleet view").

Every step ends a run that can reach the CR by leaving one machine-readable record on it, one
annotation per field (common.cr.RECORD_ANNOTATIONS) so that kube-state-metrics reads each with
one path: the step, its result (done, waiting, blocked, attention), a stable reason code
(common.reasons), the one line a person acts on, and since when this result and reason hold.
It also writes that line to the container's termination message, and a blocked or attention
outcome becomes a Warning Event on the CR, its repeats folded into one Event's count.

All of it is best effort: a failure is logged and changes neither the exit code nor the
step's own writes. The record is a merge patch of only its own keys, without a precondition,
so it never fights the step marks (which keep theirs); it is not written when nothing changed,
so a finished chain run again writes nothing. It costs at most one request per run, none when
unchanged: what the CR holds is what the step last read or wrote (Kube.keep).
"""

from __future__ import annotations

import datetime
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from common import kyma, reasons, redact
from common.cluster.client import Kube, resource_path
from common.cr import CR_PATH, annotations_of, event_body
from common.errors import EXIT_REFUSED, EXIT_USAGE, ApiError, ConnectionFailed, CpError
from common.logs import fields

if TYPE_CHECKING:
    from common import runner

log = logging.getLogger("record")

DONE, WAITING, BLOCKED, ATTENTION = "done", "waiting", "blocked", "attention"
RESULTS = (DONE, WAITING, BLOCKED, ATTENTION)
# The chain's steps in their order: a step's `done` does not replace a later step's record.
CHAIN = ("migrator", "backup", "cleaner")
MAX_MESSAGE_BYTES = 1024
TERMINATION_LOG_ENV = "CP_TERMINATION_LOG"
TERMINATION_LOG = "/dev/termination-log"
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Outcome:
    """How a run ended, as the record, the termination message and the Event say it."""

    result: str
    reason: str
    message: str

    @property
    def line(self) -> str:
        """The termination message: the reason, then the message."""
        return f"{self.reason}: {self.message}"


def one_line(text: str) -> str:
    """Redacted, on one line (an error's details joined with "; "), at most 1 KiB of UTF-8."""
    parts = [part.strip().removeprefix("- ").strip() for part in text.splitlines()]
    joined = _SPACES.sub(" ", "; ".join(part for part in parts if part))
    line = redact.scrub(joined)
    raw = line.encode()
    if len(raw) <= MAX_MESSAGE_BYTES:
        return line
    return raw[: MAX_MESSAGE_BYTES - 3].decode(errors="ignore") + "..."


def done(message: str) -> Outcome:
    return Outcome(DONE, reasons.COMPLETED, one_line(message))


def attention(reason: str, message: str) -> Outcome:
    """Exit 0, and yet a person should look."""
    return Outcome(ATTENTION, reason, one_line(message))


def ended_ok(summary: str, attention_reason: str | None = None) -> Outcome:
    """A step that exited 0: done, or attention with the reason its outcome names."""
    return attention(attention_reason, summary) if attention_reason else done(summary)


def interrupted(message: str) -> Outcome:
    return Outcome(WAITING, reasons.INTERRUPTED, one_line(message))


def of_error(err: BaseException) -> Outcome:
    """A failure's outcome: blocked when a person must act (exit 3, or 2), else waiting."""
    if isinstance(err, CpError):
        blocked = err.exit_code in (EXIT_REFUSED, EXIT_USAGE)
        return Outcome(BLOCKED if blocked else WAITING, err.reason, one_line(str(err)))
    return Outcome(WAITING, reasons.UNEXPECTED_ERROR, one_line(f"unexpected failure: {err}"))


@dataclass(frozen=True)
class Record:
    """The record as the CR holds it (what cp-status shows)."""

    step: str
    result: str
    reason: str
    message: str
    since: str

    @classmethod
    def of(cls, annotations: Mapping[str, str]) -> Record | None:
        if not annotations.get(kyma.ANNOTATION_RESULT):
            return None
        return cls(
            step=annotations.get(kyma.ANNOTATION_STEP, ""),
            result=annotations.get(kyma.ANNOTATION_RESULT, ""),
            reason=annotations.get(kyma.ANNOTATION_REASON, ""),
            message=annotations.get(kyma.ANNOTATION_MESSAGE, ""),
            since=annotations.get(kyma.ANNOTATION_SINCE, ""),
        )

    def as_dict(self) -> dict[str, str]:
        return {
            "step": self.step,
            "result": self.result,
            "reason": self.reason,
            "message": self.message,
            "since": self.since,
        }


def _position(step: str) -> int | None:
    return CHAIN.index(step) if step in CHAIN else None


def _later(step: str, than: str) -> bool:
    """`step` comes after `than` in the chain (a step outside it, cp-restore, never does)."""
    a, b = _position(step), _position(than)
    return a is not None and b is not None and a > b


def changes(
    annotations: Mapping[str, str], step: str, outcome: Outcome, now: str
) -> dict[str, str] | None:
    """The record's annotations to set, or None when nothing changed (a pure function).

    - the same step, result and reason: only a new message is written (never for `done`: a
      rerun's "nothing to do" does not replace what the run that did the work said);
    - `done` does not replace the record of a later step (the migrator run again while the
      backup is blocked does not hide that), nor another step's `attention`, which stays
      until its own step clears it; the same result and reason at an earlier step is nothing
      new either (an orphaned configuration, the chain run again);
    - `since` stays while the result and reason stay (the step that sees them may move)."""
    old = Record.of(annotations)
    if old is not None:
        same_cause = old.result == outcome.result and old.reason == outcome.reason
        if same_cause and old.step == step:
            if outcome.result == DONE or old.message == outcome.message:
                return None
            return {kyma.ANNOTATION_MESSAGE: outcome.message}
        if outcome.result == DONE and (
            _later(old.step, step) or (old.result == ATTENTION and old.step != step)
        ):
            return None
        if same_cause and _later(old.step, step):
            return None
    since = old.since if old is not None and old.since and same_cause else now
    return {
        kyma.ANNOTATION_STEP: step,
        kyma.ANNOTATION_RESULT: outcome.result,
        kyma.ANNOTATION_REASON: outcome.reason,
        kyma.ANNOTATION_MESSAGE: outcome.message,
        kyma.ANNOTATION_SINCE: since,
    }


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(stamp: str) -> float:
    """Unix seconds of an RFC 3339 time (`since`), as kube-state-metrics reads it."""
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def write(
    kube: Kube,
    step: str,
    outcome: Outcome,
    *,
    now: str | None = None,
    logger: logging.Logger = log,
) -> bool:
    """Leave the record on the CR as this run last saw it; True when a request was made.
    Best effort: every way it is not written is logged, and nothing is raised."""
    cr_name = f"{kyma.NAMESPACE}/{kyma.CR_NAME}"
    seen, cr = kube.kept(CR_PATH)
    if not seen:
        logger.info(
            "the record is not written: this run did not read the CR",
            extra=fields(object=cr_name, result=outcome.result, reason=outcome.reason),
        )
        return False
    if cr is None:
        logger.info(
            "the record is not written: the CR does not exist",
            extra=fields(object=cr_name, result=outcome.result, reason=outcome.reason),
        )
        return False
    if outcome.reason == reasons.APISERVER_UNREACHABLE:
        logger.info(
            "the record is not written: the apiserver does not answer",
            extra=fields(object=cr_name, result=outcome.result, reason=outcome.reason),
        )
        return False
    values = changes(annotations_of(cr), step, outcome, now or now_rfc3339())
    if values is None:
        logger.debug("the record is unchanged", extra=fields(object=cr_name, reason=outcome.reason))
        return False
    try:
        # Only our own keys and no resourceVersion: a step mark's precondition is its own.
        kube.merge_patch(CR_PATH, {"metadata": {"annotations": values}}, retry_safe=True)
    except (ApiError, ConnectionFailed, CpError) as err:
        logger.warning(
            "the record could not be written",
            extra=fields(object=cr_name, reason=outcome.reason, error=str(err)),
        )
        return True
    except Exception as err:  # best effort means best effort
        logger.warning(
            "the record could not be written",
            extra=fields(object=cr_name, reason=outcome.reason, error=repr(err)),
        )
        return True
    logger.info(
        "recorded",
        extra=fields(object=cr_name, step=step, result=outcome.result, reason=outcome.reason),
    )
    return True


def event_name(step: str) -> str:
    """One Warning Event per step (deploy/rbac.yaml grants each step its own by name): a
    repeat of its reason adds to its count, another reason starts it afresh."""
    return f"{kyma.CR_NAME}.migration-{step}"


def warn(
    kube: Kube,
    step: str,
    outcome: Outcome,
    component: str,
    *,
    now: str | None = None,
    logger: logging.Logger = log,
) -> None:
    """A Warning Event on the CR with the reason code as its reason; a repeat adds to the
    count of the one Event (as kubectl shows it: "x5 over 10m"). Best effort."""
    seen, cr = kube.kept(CR_PATH)
    if not seen or cr is None:
        return
    name = event_name(step)
    path = resource_path("", "v1", "events", kyma.NAMESPACE, name)
    stamp = now or now_rfc3339()
    body = event_body(cr, outcome.reason, outcome.message, component, kind="Warning", now=stamp)
    body["metadata"] = {"name": name, "namespace": kyma.NAMESPACE}
    try:
        existing = kube.get(path)
        if existing is None:
            kube.create(resource_path("", "v1", "events", kyma.NAMESPACE), body)
            return
        involved = existing.get("involvedObject") or {}
        repeat = (
            involved.get("uid") == cr["metadata"].get("uid")
            and existing.get("reason") == outcome.reason
            and existing.get("type") == "Warning"
        )
        change: dict[str, object] = {
            "metadata": {"resourceVersion": existing["metadata"]["resourceVersion"]},
            "count": int(existing.get("count") or 1) + 1 if repeat else 1,
            "lastTimestamp": stamp,
            "message": outcome.message,
        }
        if not repeat:  # another reason (or an Event about an earlier CR): afresh
            change.update(
                {key: body[key] for key in ("reason", "type", "involvedObject", "firstTimestamp")}
            )
        kube.merge_patch(path, change, retry_safe=True)
    except Exception as err:  # best effort: a 409 from another pod's Event included
        logger.warning(
            "could not record the Warning event",
            extra=fields(object=f"{kyma.NAMESPACE}/{name}", error=str(err)),
        )


def termination_message(
    outcome: Outcome,
    environ: Mapping[str, str] | None = None,
    logger: logging.Logger = log,
) -> None:
    """The one-line outcome into the termination-message file the kubelet reads (the Pod's
    `...terminated.message`): CP_TERMINATION_LOG, else /dev/termination-log when it exists
    (outside a container there is none; nothing is created in /dev)."""
    env = os.environ if environ is None else environ
    named = env.get(TERMINATION_LOG_ENV, "").strip()
    path = Path(named or TERMINATION_LOG)
    if not named and not path.exists():
        return
    try:
        path.write_text(outcome.line + "\n", encoding="utf-8")
    except OSError as err:
        logger.warning(
            "could not write the termination message", extra=fields(path=str(path), error=str(err))
        )


def of_run(run: runner.Run, ended: runner.Outcome) -> Outcome:
    """The record's outcome of how a run ended (common.runner)."""
    if ended.interrupted:
        done = run.progress.summary() if run.progress else "nothing of this run was confirmed"
        return interrupted(f"interrupted by {ended.interrupted}: {done}; exit 1, a rerun continues")
    if ended.error is not None:
        return of_error(ended.error)
    return ended_ok(run.summary or f"{run.tool} finished", run.attention)


def attach(run: runner.Run, *, dry_run: bool = False, record_on_cr: bool = True) -> runner.Run:
    """Hook the end of `run` (common.runner.step_ended): the termination message always; for
    a step that changes the cluster (`record_on_cr`), and not on a dry run, the record on the
    CR and, for blocked or attention, the Warning Event (each time for blocked, whose repeats
    count; for attention when the record moved). The client keeps the CR as the run last
    saw it, so that the record costs no read of its own."""

    def at_end(run: runner.Run, ended: runner.Outcome) -> None:
        outcome = of_run(run, ended)
        # Logged as the step's own lines (a step's log is its logger's alone).
        termination_message(outcome, logger=run.log)
        if not record_on_cr or dry_run:
            return
        if run.kube is None:
            run.log.info(
                "the record is not written: there is no connection to the cluster",
                extra=fields(result=outcome.result, reason=outcome.reason),
            )
            return
        wrote = write(run.kube, run.tool, outcome, logger=run.log)
        if outcome.result == BLOCKED or (outcome.result == ATTENTION and wrote):
            warn(run.kube, run.tool, outcome, f"cp-{run.tool}", logger=run.log)

    if record_on_cr:
        run.keep.append(CR_PATH)
    run.at_end.append(at_end)
    return run
