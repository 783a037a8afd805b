"""The small cells are measured in several fresh processes of each system and judged on the
median (bench/repeats.py): one process's CPU per request moves by a few percent."""

from __future__ import annotations

import statistics
from typing import Any

from bench import repeats, report


def _cell(target: str, c: int, cpu: float, process: int = 1, **kw: Any) -> dict[str, Any]:
    cell: dict[str, Any] = {
        "scenario": "small",
        "target": target,
        "c": c,
        "tool": "wrk",
        "requests": 1000,
        "errors": 0,
        "rps": 1000.0 / cpu if cpu else 20000.0,
        "p50_ms": 1.0,
        "p99_ms": 2.0,
        "peak_rss_mib": 50.0,
        "cpu_ms_per_req": cpu,
    }
    if process > 1:  # as repeats.one_process tags them; the first process's cells are untagged
        cell["process"] = process
    return cell | kw


def test_merge_takes_each_measure_median_sums_counts_and_keeps_every_process() -> None:
    samples = [
        _cell("pixgate", 64, 0.234, p50_ms=3.0),
        _cell("pixgate", 64, 0.212, 2, p50_ms=1.0, errors=2, sample_error="HTTP 502"),
        _cell("pixgate", 64, 0.217, 3, p50_ms=2.0),
    ]
    merged = repeats.merge(samples)
    assert merged["cpu_ms_per_req"] == 0.217  # the median, not the first or the mean
    assert merged["p50_ms"] == 2.0
    assert (merged["requests"], merged["errors"]) == (3000, 2)
    assert merged["sample_error"] == "HTTP 502"
    assert [p["process"] for p in merged["processes"]] == [1, 2, 3]
    assert [p["cpu_ms_per_req"] for p in merged["processes"]] == [0.234, 0.212, 0.217]
    assert "process" not in merged


def test_fold_merges_only_the_repeated_small_cells_in_place() -> None:
    cells = [
        _cell("direct", 64, 0.0),
        _cell("floor", 64, 0.114),
        {**_cell("floor", 64, 0.2), "scenario": "b64"},  # other scenarios stay as they are
        _cell("pixgate", 1, 0.30),
        _cell("pixgate", 64, 0.234),
        _cell("pixgate-2w", 64, 0.4),
        _cell("floor", 64, 0.110, 2),
        _cell("pixgate", 1, 0.28, 2),
        _cell("pixgate", 64, 0.212, 2),
    ]
    folded = repeats.fold(cells)
    assert [(c["scenario"], c["target"], c["c"]) for c in folded] == [
        ("small", "direct", 64),
        ("small", "floor", 64),
        ("b64", "floor", 64),
        ("small", "pixgate", 1),
        ("small", "pixgate", 64),
        ("small", "pixgate-2w", 64),
    ]
    assert folded[1]["cpu_ms_per_req"] == statistics.median([0.114, 0.110])
    assert repeats.cpu_samples(folded[4]) == [0.234, 0.212]
    assert "processes" not in folded[0] and "processes" not in folded[5]
    assert repeats.fold(folded) == folded  # folding twice changes nothing


def test_spread_and_ratio_range_over_the_processes() -> None:
    gw = repeats.merge([_cell("pixgate", 64, v) for v in (0.212, 0.223, 0.218)])
    fl = repeats.merge([_cell("floor", 64, v) for v in (0.110, 0.116, 0.112)])
    assert repeats.spread(gw) == " [0.212-0.223, 3 processes]"
    assert repeats.spread(_cell("pixgate", 64, 0.2)) == ""  # one process: nothing to show
    low, high = repeats.ratio_range(gw, fl) or (0.0, 0.0)
    assert (round(low, 3), round(high, 3)) == (round(0.212 / 0.116, 3), round(0.223 / 0.110, 3))
    assert repeats.ratio_range(_cell("pixgate", 64, 0.2), _cell("floor", 64, 0.1)) is None


def _results(gw: list[float], fl: list[float], ll: list[float]) -> dict[str, Any]:
    cells = [_cell("direct", 1, 0.0, p50_ms=0.05)]
    for c in (1, 16, 64):
        for target, values in (("floor", fl), ("pixgate", gw), ("litellm", ll)):
            cells += [_cell(target, c, v, i + 1) for i, v in enumerate(values)]
    return {
        "cells": repeats.fold(cells),
        "systems": {"litellm": {"status": "ok"}, "pixgate": {}, "floor": {}},
    }


def test_targets_are_judged_on_the_medians_and_say_when_single_processes_disagree() -> None:
    # The first process alone would fail own cost (0.234 / 0.110 = 2.13x); the medians pass.
    rows = {
        t.name: t
        for t in report.evaluate(_results([0.234, 0.212, 0.217], [0.110, 0.116, 0.112], [8.0]))
    }
    own = rows["own cost, small c=64"]
    assert own.result == "pass" and own.measured.startswith("1.94x (0.217 ms [0.212-0.234")
    assert own.floor == "0.112 ms [0.110-0.116, 3 processes]"
    assert "single-process pairs: 1.83-2.13x, some would pass, some fail" in own.note
    # LiteLLM ran one process here: its ratio is on pixgate's median, the range on pixgate's.
    ll = rows["small c=64 vs LiteLLM"]
    assert ll.result == "pass"
    assert ll.measured == "36.9x lower (0.217 [0.212-0.234, 3 processes] vs 8.000 ms)"
    assert ll.note == "single-process pairs: 34.19-37.74x, pass for all"


def test_one_process_each_reads_as_before() -> None:
    rows = {t.name: t for t in report.evaluate(_results([0.25], [0.13], [9.0]))}
    own = rows["own cost, small c=64"]
    assert (own.measured, own.floor, own.note) == ("1.92x (0.250 ms)", "0.130 ms", "")


def test_the_report_lists_every_process_of_each_folded_cell() -> None:
    cells = _results([0.234, 0.212, 0.217], [0.110, 0.116, 0.112], [7.0, 6.8, 7.1])["cells"]
    lines = repeats.table(cells)
    row = next(line for line in lines if line.startswith("| 64 | pixgate |"))
    assert "| 3 | 0.217 | 0.212-0.234 |" in row and "0.234, 0.212, 0.217" in row
    assert repeats.table([_cell("pixgate", 64, 0.2)]) == []  # one process: no table


class _Bench:
    """What repeats.run uses of bench.run.Bench; its pixgate does not start again, and
    records that as Bench.start_pixgate does (the system's status)."""

    processes, quick = 3, True

    def __init__(self) -> None:
        self.systems: dict[str, dict[str, Any]] = {
            "pixgate": {"status": "ok", "url": "http://127.0.0.1:1"},
        }
        self.notes: list[str] = []
        self.cells: list[dict[str, Any]] = []

    def start_pixgate(self, label: str) -> None:
        self.systems["pixgate"]["status"] = "failed to start: no port"


def test_a_repeat_that_does_not_start_leaves_the_system_measured() -> None:
    bench = _Bench()
    repeats.run(bench, (repeats.SMALL,))  # type: ignore[arg-type]
    # the first process's cells stand: the targets and the system row still read them
    assert bench.systems["pixgate"]["status"] == "ok"
    assert bench.notes == [
        f"pixgate: process {n} of the small cells did not start: failed to start: no port"
        for n in (2, 3)
    ]
