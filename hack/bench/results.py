"""What a benchmark run measured: plain data, pickled for `--rerender`."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hack.bench.node import NodeBench
    from hack.bench.targets import Step


@dataclass
class Run:
    seconds: float
    exit_code: int
    max_rss_kib: int
    cpu_seconds: float = 0.0  # the tool's own user + system time
    server_cpu_seconds: float = 0.0  # kube-apiserver + etcd during the run
    requests: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    output: str = ""


@dataclass
class Series:
    runs: list[Run]

    @property
    def seconds(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def spread(self) -> str:
        times = [r.seconds for r in self.runs]
        return f"{min(times):.3f}-{max(times):.3f}"

    @property
    def requests(self) -> int:
        return int(statistics.median(r.requests for r in self.runs))

    @property
    def cpu(self) -> float:
        return statistics.median(r.cpu_seconds for r in self.runs)

    @property
    def server_cpu(self) -> float:
        return statistics.median(r.server_cpu_seconds for r in self.runs)

    @property
    def rss_mib(self) -> float:
        return max(r.max_rss_kib for r in self.runs) / 1024

    @property
    def exit_codes(self) -> str:
        return ",".join(sorted({str(r.exit_code) for r in self.runs}))


@dataclass
class StepResult:
    step: Step
    cold: Series
    help_seconds: float
    help_rss_mib: float
    imports: dict[str, Any]


@dataclass
class Results:
    machine: dict[str, str]
    versions: dict[str, str]
    runs: int
    sweep_runs: int
    floor_seconds: float
    steps: list[StepResult] = field(default_factory=list)
    skipped: list[Step] = field(default_factory=list)
    # In the images (podman): by tool; `images_note` says why not when empty.
    image: dict[str, Series] = field(default_factory=dict)
    image_refs: dict[str, str] = field(default_factory=dict)
    images_note: str = ""
    sweep: dict[int, Series] = field(default_factory=dict)
    seconds: float = 0.0
    node: NodeBench | None = None  # deploy/ on a real node (issue 13)

    def steps_built(self) -> list[Step]:
        return [result.step for result in self.steps]
