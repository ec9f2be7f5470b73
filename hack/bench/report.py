"""docs/benchmarks.md and docs/benchmarks.png from a run's results. The prose lives in
report.md and node.md (string.Template sections); this module computes the figures and the
tables that fill them in."""

from __future__ import annotations

import datetime
import re
import string
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from cleaner.observe import PAGE_SIZE
from hack.bench.results import Results
from hack.bench.targets import (
    CLEANER,
    HELP_TARGET_S,
    STEPS,
    SWEEP_TARGETS_S,
    minimum_of,
    target_rows,
)

HERE = Path(__file__).parent
NOTES = HERE / "notes.md"
_SECTION = re.compile(r"^<!-- section: ([a-z-]+) -->\n", re.MULTILINE)


@cache
def sections(name: str) -> dict[str, string.Template]:
    """The sections of a template file: the text after each `<!-- section: NAME -->` line up
    to the next one, less its last line break."""
    text = (HERE / name).read_text(encoding="utf-8")
    parts = _SECTION.split(text)[1:]
    return {
        key: string.Template(body[:-1] if body.endswith("\n") else body)
        for key, body in zip(parts[::2], parts[1::2], strict=True)
    }


def fill(name: str, section: str, **values: object) -> str:
    return sections(name)[section].substitute({k: str(v) for k, v in values.items()})


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render(results: Results, now: datetime.datetime | None = None) -> str:
    when = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    return fill(
        "report.md",
        "report",
        when=when,
        seconds=f"{results.seconds:.0f}",
        runs=results.runs,
        images=_images(results),
        cores=results.machine["cores"],
        machine=table(
            ("what", "value"),
            [(k, v) for k, v in results.machine.items()]
            + [(k, f"`{v}`") for k, v in results.versions.items()],
        ),
        skipped=_skipped(results),
        targets=table(("what", "target", "measured", "result"), target_rows(results)),
        python=Path(sys.executable).name,
        floor=f"{results.floor_seconds:.3f}",
        steps=_steps(results),
        in_images=_in_images(results),
        requests=_requests(results),
        minimums=_minimums(),
        page_size=PAGE_SIZE,
        cleaner_base=minimum_of(CLEANER, 0) - 1,
        sweep=_sweep(results),
        node=_node(results),
        imports=_imports(results),
        notes=NOTES.read_text(encoding="utf-8").strip() if NOTES.exists() else "",
    )


def _images(results: Results) -> str:
    if results.image_refs:
        refs = ", ".join(f"`{ref}`" for ref in results.image_refs.values())
        return fill("report.md", "images-measured", refs=refs)
    return fill("report.md", "images-not-measured", why=results.images_note or "none")


def _skipped(results: Results) -> str:
    if not results.skipped:
        return ""
    steps = ", ".join(
        fill("report.md", "skipped-step", script=s.script, module=s.module) for s in results.skipped
    )
    return fill("report.md", "skipped", steps=steps)


def _steps(results: Results) -> str:
    rows: list[tuple[str, ...]] = []
    for r in results.steps:
        minimum = minimum_of(r.step, 0)
        rows.append(
            (
                r.step.script,
                str(len(r.cold.runs)),
                f"{r.cold.seconds:.3f}",
                r.cold.spread,
                str(r.cold.requests),
                str(minimum),
                f"{r.cold.requests / minimum:.2f}",
                f"{r.cold.cpu:.3f}",
                f"{r.cold.server_cpu:.3f}",
                f"{r.cold.rss_mib:.1f}",
                f"{r.help_seconds:.3f}",
                f"{r.help_rss_mib:.1f}",
                r.cold.exit_codes,
            )
        )
    header: tuple[str, ...] = ("step", "runs", "wall s (median)", "min-max s", "API requests")
    header += ("minimum", "ratio")
    header += ("tool CPU s", "server CPU s", "peak RSS MiB", "`--help` s", "`--help` RSS MiB")
    return table((*header, "exit"), rows)


def _in_images(results: Results) -> str:
    if not results.image:
        return ""
    rows = [
        (
            step.script,
            f"`{results.image_refs[step.tool]}`",
            str(len(series.runs)),
            f"{series.seconds:.3f}",
            series.spread,
            f"{series.cpu:.3f}",
            f"{series.rss_mib:.1f}",
            str(series.requests),
        )
        for step in STEPS
        if (series := results.image.get(step.tool)) is not None
    ]
    header = ("step", "image", "runs", "wall s (median)", "min-max s", "CPU s", "RSS MiB", "API")
    return fill("report.md", "in-images", table=table(header, rows))


def _requests(results: Results) -> str:
    lines = []
    for r in results.steps:
        last = r.cold.runs[-1]
        kinds = ", ".join(f"{kind} x{count}" for kind, count in sorted(last.by_kind.items()))
        lines.append(f"- **{r.step.script}** ({last.requests}): {kinds}")
    return "\n".join(lines)


def _minimums() -> str:
    lines: list[str] = []
    for step in STEPS:
        needs = step.minimum(0)
        lines += [f"**{step.script}: {sum(n.count for n in needs)}**", ""]
        lines += [f"- {need.count} x {need.why}" for need in needs]
        lines.append("")
    return "\n".join(lines)


def _sweep(results: Results) -> str:
    if not results.sweep:
        return fill("report.md", "no-sweep")
    rows: list[tuple[str, ...]] = []
    for n, series in results.sweep.items():
        minimum = minimum_of(CLEANER, n)
        rows.append(
            (
                str(n),
                str(len(series.runs)),
                f"{series.seconds:.3f}",
                series.spread,
                str(series.requests),
                str(minimum),
                f"{series.requests / minimum:.2f}",
                f"{series.requests / series.seconds:.0f}",
                f"{series.cpu:.2f}",
                f"{series.server_cpu:.2f}",
                f"{series.rss_mib:.1f}",
                series.exit_codes,
            )
        )
    header: tuple[str, ...] = ("N", "runs", "wall s (median)", "min-max s", "API requests")
    header += ("minimum", "ratio")
    header += ("requests/s", "tool CPU s", "server CPU s", "peak RSS MiB", "exit")
    return fill("report.md", "sweep", sweep_runs=results.sweep_runs, table=table(header, rows))


def _node(results: Results) -> str:
    if results.node is None:
        return ""
    from hack.bench import node

    return "\n\n" + "\n".join(node.render(results.node))


def _imports(results: Results) -> str:
    rows: list[tuple[str, ...]] = []
    for r in results.steps:
        imports = r.imports
        watched = ", ".join(f"{m} {ms:.1f}" for m, ms in imports["watched"].items())
        top = ", ".join(f"{m} {us / 1000:.1f}" for m, us in imports["top"][:5])
        rows.append(
            (
                r.step.script,
                str(imports["modules"]),
                f"{imports['total_ms']:.0f}",
                "**yes**" if imports["kubernetes"] else "no",
                watched,
                top,
            )
        )
    header: tuple[str, ...] = ("step", "modules", "import ms", "imports `kubernetes`")
    header += ("cumulative ms of watched packages", "largest own times (ms)")
    return table(header, rows)


def plot(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (cold, sweep_time, sweep_requests) = plt.subplots(1, 3, figsize=(16, 4.8))
    names = [r.step.tool for r in results.steps] + ["--help"]
    values = [r.cold.seconds for r in results.steps] + [
        max((r.help_seconds for r in results.steps), default=0.0)
    ]
    targets = [r.step.target_seconds for r in results.steps] + [HELP_TARGET_S]
    bars = cold.bar(names, values, color="#4c72b0", label="measured (median)")
    cold.scatter(names, targets, color="#c44e52", marker="_", s=900, label="target", zorder=3)
    cold.bar_label(bars, fmt="%.2f s")
    cold.set_ylabel("seconds")
    cold.set_title("Cold start, whole process (standard install)")
    cold.legend(loc="upper left")

    if results.sweep:
        ns = list(results.sweep)
        sweep_time.plot(ns, [results.sweep[n].seconds for n in ns], "o-", label="measured")
        sweep_time.scatter(
            list(SWEEP_TARGETS_S),
            list(SWEEP_TARGETS_S.values()),
            color="#c44e52",
            marker="_",
            s=600,
            label="target",
            zorder=3,
        )
        sweep_requests.plot(ns, [results.sweep[n].requests for n in ns], "o-", label="actual")
        sweep_requests.plot(
            ns, [minimum_of(CLEANER, n) for n in ns], "--", color="gray", label="minimum"
        )
        sweep_time.legend()
        sweep_requests.legend()
    else:
        for axes in (sweep_time, sweep_requests):
            axes.text(0.5, 0.5, "cp-cleaner not built yet", ha="center", transform=axes.transAxes)
    sweep_time.set_title("cp-cleaner: wall time vs ServiceMappings")
    sweep_time.set_xlabel("ServiceMappings")
    sweep_time.set_ylabel("seconds")
    sweep_requests.set_title("cp-cleaner: API requests vs ServiceMappings")
    sweep_requests.set_xlabel("ServiceMappings")
    sweep_requests.set_ylabel("requests")
    figure.suptitle(
        f"cp-migration on {results.machine['cores']} cores, {results.machine['CPU']}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
