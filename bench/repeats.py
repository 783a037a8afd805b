"""The small-JSON cells over several fresh processes of each gateway, judged on the median.

One Python process's CPU per request moves by about ±4% from process to process (hash seed,
memory layout, where the allocator put things), so one process per system let a target at its
edge be decided by which process the run happened to sample. As pyperf does, the small cells
of the floor, pixgate and LiteLLM (the cells issue 19's CPU/req targets read) are measured in
`--processes N` fresh processes of each system, each with its own warm-up, and folded into
one cell per system and concurrency: each measure is the median over the processes, requests
and errors are summed, and every process's raw cell is kept under `processes`.

The first process of each system is the one its own phase of the run starts (unchanged);
`run` adds processes 2..N, in rounds that take floor, pixgate and LiteLLM in turn, so a drift
of the machine's speed during the run reaches every system alike.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from . import litellm_peer
from .judging import Cell
from .procs import Proc
from .scenarios import CLIENT_KEY, SMALL, Scenario

if TYPE_CHECKING:
    from .run import Bench

REPEATED = ("floor", "pixgate", "litellm")  # the systems whose small cells the targets read
# Measures folded to their median over the processes; the others come from the first process.
MEDIAN = (
    "rps",
    "mean_ms",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "little_rps",
    "duration_s",
    "upstream_cpu_pct",
    "load_cpu_pct",
    "core1_pct",
    "cpu_s",
    "cpu_pct",
    "cpu_ms_per_req",
    "waited_pct",
    "peak_rss_mib",
    "end_rss_mib",
)
SUMMED = ("requests", "errors")


def repeated(cell: Cell) -> bool:
    return cell["scenario"] == SMALL.name and cell["target"] in REPEATED


def merge(samples: list[Cell]) -> Cell:
    """One cell from one (system, c)'s per-process cells: medians, sums, and the raw cells."""
    cell = {k: v for k, v in samples[0].items() if k != "process"}
    for field in MEDIAN:
        values = [s[field] for s in samples if s.get(field) is not None]
        cell[field] = statistics.median(values) if values else None
    for field in SUMMED:
        cell[field] = sum(s.get(field) or 0 for s in samples)
    errors = [s["sample_error"] for s in samples if s.get("sample_error")]
    cell.pop("sample_error", None)
    if errors:
        cell["sample_error"] = errors[0]
    cell["processes"] = [dict(s, process=s.get("process", 1)) for s in samples]
    return cell


def fold(cells: list[Cell]) -> list[Cell]:
    """The repeated small cells folded per (system, c), each at its first process's place."""
    groups: dict[tuple[str, int], list[Cell]] = {}
    for cell in cells:
        if repeated(cell) and "processes" not in cell:
            groups.setdefault((cell["target"], cell["c"]), []).append(cell)
    out: list[Cell] = []
    for cell in cells:
        group = groups.get((cell["target"], cell["c"])) if repeated(cell) else None
        if group is None:
            out.append(cell)
        elif cell is group[0]:
            out.append(merge(group))
    return out


def cpu_samples(cell: Cell | None) -> list[float]:
    """Each process's CPU ms per request (one value for an unfolded cell)."""
    if cell is None:
        return []
    raw = cell.get("processes") or [cell]
    return [float(s["cpu_ms_per_req"]) for s in raw if s.get("cpu_ms_per_req") is not None]


def spread(cell: Cell | None) -> str:
    """' [min-max over N processes]' of a folded cell's CPU/req, '' for one process."""
    values = cpu_samples(cell)
    if len(values) < 2:
        return ""
    return f" [{min(values):.3f}-{max(values):.3f}, {len(values)} processes]"


def ratio_range(top: Cell | None, bottom: Cell | None) -> tuple[float, float] | None:
    """The lowest and highest CPU/req ratio any pair of the two systems' processes gives:
    whether the verdict on the medians could have gone the other way with single processes."""
    tops, bottoms = cpu_samples(top), cpu_samples(bottom)
    if (len(tops) < 2 and len(bottoms) < 2) or not tops or not bottoms or min(bottoms) <= 0:
        return None
    return min(tops) / max(bottoms), max(tops) / min(bottoms)


def table(cells: list[Cell]) -> list[str]:
    """Markdown: each folded small cell's per-process CPU/req, for the report."""
    folded = [c for c in cells if repeated(c) and len(c.get("processes") or ()) > 1]
    if not folded:
        return []
    lines = [
        "",
        "## Small cells over several fresh processes",
        "",
        "Each system's small cells were measured in several fresh processes, each with its own "
        "warm-up (bench/repeats.py); the Cells table and the targets use the median of each "
        "measure. One process's CPU per request moves by a few percent from process to process.",
        "",
        "| c | system | processes | CPU ms/req median | min-max | (max-min)/median | "
        "each process | req/s median |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cell in sorted(folded, key=lambda c: (c["c"], REPEATED.index(c["target"]))):
        values = cpu_samples(cell)
        if not values:
            continue
        median = statistics.median(values)
        width = (max(values) - min(values)) / median * 100 if median else 0.0
        lines.append(
            f"| {cell['c']} | {cell['target']} | {len(values)} | {median:.3f} | "
            f"{min(values):.3f}-{max(values):.3f} | {width:.1f}% | "
            f"{', '.join(f'{v:.3f}' for v in values)} | {cell['rps']:.0f} |"
        )
    return lines


def run(bench: Bench, scenarios: tuple[Scenario, ...]) -> None:
    """Processes 2..N of each repeated system, on the small cells only."""
    if SMALL not in scenarios:
        return
    for process in range(2, bench.processes + 1):
        for system in REPEATED:
            if bench.systems.get(system, {}).get("status") == "ok":
                one_process(bench, system, process)


def one_process(bench: Bench, system: str, process: int) -> None:
    """A fresh process of `system` through the small cells its first process ran."""
    info = bench.systems[system]
    status = info.get("status")
    started = start(bench, system, f"small-{process}")
    if started is None:
        # A start records its failure as the system's status; the first process did start
        # and measured every cell, so this one is a note, not the system's failure.
        failed, info["status"] = info.get("status"), status
        bench.notes.append(
            f"{system}: process {process} of the small cells did not start: {failed}"
        )
        return
    proc, url, headers = started
    before = len(bench.cells)
    try:
        for c in SMALL.concurrencies(system, bench.quick):
            bench.cell(system, SMALL, url, headers, c, proc)
    finally:
        bench.stop(proc)
    for cell in bench.cells[before:]:
        cell["process"] = process


def start(bench: Bench, system: str, label: str) -> tuple[Proc, str, dict[str, str]] | None:
    """A fresh process of the floor, pixgate or LiteLLM: (process, URL, headers)."""
    headers = {"Content-Type": "application/json"}
    if system == "litellm":
        peer = litellm_peer.installed()
        return litellm_peer.start(bench, peer, label) if peer is not None else None
    if system == "floor":
        proc = bench.start_floor(f"floor-{label}")
    else:
        proc = bench.start_pixgate(label)
        headers["Authorization"] = f"Bearer {CLIENT_KEY}"
    if proc is None:
        return None
    return proc, bench.systems[system]["url"] + "/v1/images/generations", headers
