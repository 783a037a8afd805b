"""The bench judges each target against the aiohttp floor and LiteLLM measured in the same run."""

from __future__ import annotations

from typing import Any

from bench import report


def _cell(scenario: str, target: str, c: int, **kw: Any) -> dict[str, Any]:
    base = {"scenario": scenario, "target": target, "c": c, "rps": 100.0, "errors": 0}
    base.update({"requests": 100, "p50_ms": 1.0, "p99_ms": 2.0, "peak_rss_mib": 50.0})
    return base | kw


def _results(gw_cpu: float, ll_cpu: dict[int, float]) -> dict[str, Any]:
    cells = [_cell("small", "direct", 1, p50_ms=0.05)]
    for c in (1, 16, 64):
        cells.append(_cell("small", "floor", c, cpu_ms_per_req=0.13))
        cells.append(_cell("small", "pixgate", c, cpu_ms_per_req=gw_cpu, p50_ms=0.6))
        cells.append(_cell("small", "litellm", c, cpu_ms_per_req=ll_cpu[c]))
    cells += [
        _cell("download", "pixgate", 16, cpu_ms_per_req=3.0),
        _cell("download", "floor", 16, cpu_ms_per_req=2.5),
    ]
    systems = {
        "litellm": {"status": "ok"},
        "pixgate": {
            "status": "ok",
            "idle_rss_mib": 55.0,
            "startup_median_s": 0.6,
            "startup_s": [0.6],
        },
        "floor": {"status": "ok", "idle_rss_mib": 39.0, "startup_median_s": 0.2},
    }
    return {"cells": cells, "systems": systems}


def _by_name(results: dict[str, Any]) -> dict[str, report.Target]:
    return {t.name: t for t in report.evaluate(results)}


def test_own_cost_is_judged_against_the_floor_cpu() -> None:
    ok = _by_name(_results(0.25, {1: 9.0, 16: 9.0, 64: 9.0}))["own cost, small c=64"]
    assert (ok.result, ok.floor) == ("pass", "0.130 ms")
    bad = _by_name(_results(0.35, {1: 12.0, 16: 12.0, 64: 12.0}))["own cost, small c=64"]
    assert bad.result == "fail" and bad.measured.startswith("2.69x")


def test_litellm_cpu_ratio_is_judged_per_cell() -> None:
    # 30x at c=1 and c=64, but only 20x at c=16: that cell alone fails.
    rows = _by_name(_results(0.3, {1: 9.0, 16: 6.0, 64: 12.0}))
    assert [rows[f"small c={c} vs LiteLLM"].result for c in (1, 16, 64)] == [
        "pass",
        "fail",
        "pass",
    ]


def test_download_against_the_floor_and_missing_cells_are_not_passes() -> None:
    rows = _by_name(_results(0.25, {1: 9.0, 16: 9.0, 64: 9.0}))
    download = rows["download (URL -> b64_json) CPU/req"]
    assert download.result == "pass" and download.floor == "2.500 ms"  # 1.2x
    assert rows["b64 1.5 MB c=16 throughput"].result == "n/a"
    assert rows["idle RSS"].floor == "39.0 MiB"
    md = report.markdown(
        {
            "meta": _META,
            "systems": {},
            "cells": [],
            "targets": report.targets_as_dicts(list(rows.values())),
        }
    )
    assert "| target | threshold | measured | floor | result | note |" in md


_META = {
    "quick": True,
    "started": "x",
    "elapsed_s": 1.0,
    "host": "h",
    "pixgate": "p",
    "python": "3",
    "aiohttp": "3",
    "uvloop": None,
    "load_tool": "wrk",
    "pinning": "none",
    "cell_s": 3,
    "warmup_s": 1,
    "loadavg_start": "9",
    "loadavg_end": "9",
}
