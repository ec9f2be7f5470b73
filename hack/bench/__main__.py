"""`make bench`: each step as a whole process against a real local control plane; writes
docs/benchmarks.md and docs/benchmarks.png (see hack/bench/__init__.py for the parts).

Each step is also measured in its image (podman, as the kubelet runs it: read-only root,
UID 1337), when the images are built (`make images`), and deploy/ on a real node unless
--no-node.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
from pathlib import Path

from hack.bench import harness, report
from hack.bench.results import Results, Run, Series, StepResult
from hack.bench.targets import CLEANER, STEPS

DOCS = harness.REPO / "docs"
RESULTS = Path(tempfile.gettempdir()) / "cp-migration-bench-results.pickle"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.bench", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--runs", type=int, default=5, help="cold runs per step (median)")
    parser.add_argument("--help-runs", type=int, default=10, help="runs of --help (median)")
    parser.add_argument("--sizes", default="0,100,1000,5000", help="ServiceMapping counts")
    parser.add_argument("--sweep-runs", type=int, default=3, help="runs per ServiceMapping count")
    parser.add_argument("--out", type=Path, default=DOCS / "benchmarks.md")
    parser.add_argument(
        "--images",
        choices=("auto", "no"),
        default="auto",
        help="auto: also measure each step in its image when podman has it (make images)",
    )
    parser.add_argument(
        "--no-node", action="store_true", help="skip deploy/ on a real node (hack/bench/node.py)"
    )
    parser.add_argument(
        "--rerender",
        type=Path,
        metavar="PICKLE",
        help="only write the doc and plot again from the results a previous run saved",
    )
    args = parser.parse_args(argv)
    if args.rerender:
        with open(args.rerender, "rb") as handle:
            write_report(pickle.load(handle), args.out)
        return 0
    started = time.monotonic()
    results = measure(args)
    if not args.no_node:
        from hack.bench import node

        print(f"== deploy/ on a real node: {args.runs} runs")
        results.node = node.run(args.runs)
        if results.node.skipped:
            print(f"   not measured: {results.node.skipped}")
    results.seconds = time.monotonic() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "wb") as handle:
        pickle.dump(results, handle)
    write_report(results, args.out)
    return 0


def measure(args: argparse.Namespace) -> Results:
    """Every step cold from the venv, in its image, and the cleaner's ServiceMapping sweep."""
    from hack.devenv.controlplane import binaries_dir

    harness.compile_bytecode()
    bin_dir = Path(sys.executable).parent
    floor, _ = harness.median_time([sys.executable, "-c", "pass"], args.help_runs)
    results = Results(
        machine=harness.machine(),
        versions=harness.versions(binaries_dir()),
        runs=args.runs,
        sweep_runs=args.sweep_runs,
        floor_seconds=floor,
    )
    with harness.control_plane() as plane:
        bench = harness.Bench(plane, bin_dir)
        for step in STEPS:
            if not step.built or not (bin_dir / step.script).exists():
                print(f"== {step.script}: not built yet, skipped")
                results.skipped.append(step)
                continue
            print(f"== {step.script}: {args.runs} cold runs")
            runs = [_logged(index, bench.measure(step)) for index in range(args.runs)]
            help_seconds, help_run = harness.median_time(bench.argv(step, "--help"), args.help_runs)
            print(f"   --help: {help_seconds:.3f} s")
            results.steps.append(
                StepResult(
                    step=step,
                    cold=Series(runs),
                    help_seconds=help_seconds,
                    help_rss_mib=help_run.max_rss_kib / 1024,
                    imports=bench.import_profile(step),
                )
            )
        if args.images == "auto":
            harness.measure_images(bench, results, args.runs)
        else:
            results.images_note = "--images no"
        if CLEANER in results.steps_built():
            for n in (int(size) for size in args.sizes.split(",") if size.strip()):
                print(f"== {CLEANER.script} with {n} ServiceMappings: {args.sweep_runs} runs")
                results.sweep[n] = Series(
                    [
                        _logged(index, bench.measure(CLEANER, mappings=n))
                        for index in range(args.sweep_runs)
                    ]
                )
    return results


def _logged(index: int, run: Run) -> Run:
    print(
        f"   run {index + 1}: {run.seconds:.3f} s, {run.requests} requests, "
        f"{run.max_rss_kib / 1024:.1f} MiB, exit {run.exit_code}"
    )
    return run


def write_report(results: Results, out: Path) -> None:
    out.write_text(report.render(results), encoding="utf-8")
    report.plot(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    print(f"results saved for --rerender in {RESULTS}")


if __name__ == "__main__":
    sys.exit(main())
