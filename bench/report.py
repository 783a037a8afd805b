"""Judge the targets and render the results as Markdown (the heavy scenarios' targets are
judged in report_heavy.py)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from .judging import Cell, Target, clean, cpu, find, verdict
from .repeats import ratio_range, spread, table
from .report_heavy import heavy_targets
from .scenarios import POLL_JOBS


def _poll_figures(cell: Cell) -> str:
    return (
        f"{cell['requests']}/{cell['c']} done in {cell['duration_s']:.2f} s, "
        f"{cell['cpu_pct']:.0f}% of a core ({_f(cell.get('cpu_ms_per_req'), 2)} ms CPU/job), "
        f"{cell['peak_rss_mib']:.0f} MiB"
    )


# What a judge found: (measured, passed, note, the floor's value). `need` turns it into a row.
Judged = tuple[str, bool, str, str]


def _vs_litellm(gw: Cell | None, ll: Cell | None, floor: Cell | None) -> Judged:
    """CPU per request, the steadier measure (LiteLLM's req/s moved 83-167 across runs); on
    the medians when the cells were measured in several processes (bench/repeats.py)."""
    assert gw is not None and ll is not None
    ratio = cpu(ll) / cpu(gw) if cpu(gw) else 0.0
    return (
        f"{ratio:.1f}x lower ({cpu(gw):.3f}{spread(gw)} vs {cpu(ll):.3f}{spread(ll)} ms)",
        ratio >= 30 and not gw["errors"],
        _joined(clean(gw, ll), _edge(ratio_range(ll, gw), lambda r: r >= 30)),
        f"{cpu(floor):.3f} ms{spread(floor)}" if floor else "-",
    )


def _edge(span: tuple[float, float] | None, ok: Callable[[float], bool]) -> str:
    """What single processes would have said: the ratio over every pair of one process of
    each system, and whether that pair's verdict could differ from the medians'."""
    if span is None:
        return ""
    low, high = span
    verdicts = {ok(low), ok(high)}  # the bound is one-sided, so the ends decide
    word = "some would pass, some fail" if len(verdicts) == 2 else verdict(ok(low)) + " for all"
    return f"single-process pairs: {low:.2f}-{high:.2f}x, {word}"


def _joined(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def evaluate(results: dict[str, Any]) -> list[Target]:
    cells: list[Cell] = results["cells"]
    systems: dict[str, Any] = results["systems"]
    out: list[Target] = []

    def need(
        name: str, threshold: str, parts: list[Cell | None], judge: Callable[[], Judged]
    ) -> None:
        if any(p is None for p in parts):
            out.append(Target(name, threshold, "not measured", "n/a", "cell missing"))
            return
        measured, ok, note, floor = judge()
        out.append(Target(name, threshold, measured, verdict(ok), note, floor))

    gw64 = find(cells, "small", "pixgate", 64)
    fl64 = find(cells, "small", "floor", 64)

    def own_cost() -> Judged:
        assert gw64 is not None and fl64 is not None
        gw, fl = gw64.get("cpu_ms_per_req") or 0.0, fl64.get("cpu_ms_per_req") or 0.0
        ratio = gw / fl if fl else float("inf")
        return (
            f"{ratio:.2f}x ({gw:.3f} ms{spread(gw64)})",
            ratio <= 2.0 and not gw64["errors"],
            _joined(clean(gw64, fl64), _edge(ratio_range(gw64, fl64), lambda r: r <= 2.0)),
            f"{fl:.3f} ms{spread(fl64)}",
        )

    need("own cost, small c=64", "<= 2.0x the floor's CPU/req", [gw64, fl64], own_cost)

    litellm = systems.get("litellm", {}).get("status", "skipped")
    for c in (1, 16, 64):
        name, threshold = f"small c={c} vs LiteLLM", ">= 30x lower CPU/req than LiteLLM"
        if litellm != "ok":
            out.append(Target(name, threshold, "LiteLLM not run", "n/a", litellm))
            continue
        gw, ll = find(cells, "small", "pixgate", c), find(cells, "small", "litellm", c)
        floor = find(cells, "small", "floor", c)
        need(name, threshold, [gw, ll], functools.partial(_vs_litellm, gw, ll, floor))
    gw1 = find(cells, "small", "pixgate", 1)
    di1 = find(cells, "small", "direct", 1)
    fl1 = find(cells, "small", "floor", 1)

    def added_p50() -> Judged:
        assert gw1 is not None and di1 is not None
        added = gw1["p50_ms"] - di1["p50_ms"]
        return (
            f"{added:.3f} ms ({gw1['p50_ms']:.3f} vs {di1['p50_ms']:.3f} ms)",
            added <= 1.0 and not gw1["errors"],
            clean(gw1, di1),
            f"{fl1['p50_ms'] - di1['p50_ms']:.3f} ms" if fl1 else "-",
        )

    need("added p50 latency, small c=1", "<= 1 ms", [gw1, di1], added_p50)

    b16, fb16 = find(cells, "b64", "pixgate", 16), find(cells, "b64", "floor", 16)

    def b64_rps() -> Judged:
        assert b16 is not None
        return (
            f"{b16['rps']:.0f} req/s, {b16['errors']} errors",
            b16["rps"] >= 250 and not b16["errors"],
            clean(b16),
            f"{fb16['rps']:.0f} req/s" if fb16 else "-",
        )

    need("b64 1.5 MB c=16 throughput", ">= 250 req/s (no errors)", [b16], b64_rps)

    b64c, fb64 = find(cells, "b64", "pixgate", 64), find(cells, "b64", "floor", 64)

    def b64_rss() -> Judged:
        assert b64c is not None
        return (
            f"{b64c['peak_rss_mib']:.0f} MiB",
            b64c["peak_rss_mib"] <= 300 and not b64c["errors"],
            clean(b64c) or ("" if b64c["requests"] else "no successful request"),
            f"{fb64['peak_rss_mib']:.0f} MiB" if fb64 else "-",
        )

    need("b64 c=64 peak RSS", "<= 300 MiB", [b64c], b64_rss)

    # The download cell both gateways ran (the floor does the same fetch and base64 encoding).
    dl = [
        (g, f)
        for g in cells
        if g["scenario"] == "download" and g["target"] == "pixgate"
        for f in [find(cells, "download", "floor", g["c"])]
        if f is not None
    ]

    def download() -> Judged:
        gw, fl = dl[-1]
        ratio = cpu(gw) / cpu(fl) if cpu(fl) else float("inf")
        return (
            f"{ratio:.2f}x ({cpu(gw):.3f} ms at c={gw['c']})",
            ratio <= 1.5 and not gw["errors"],
            clean(gw, fl),
            f"{cpu(fl):.3f} ms",
        )

    need(
        "download (URL -> b64_json) CPU/req",
        "<= 1.5x the floor doing the same fetch + base64",
        [dl[-1][0] if dl else None],
        download,
    )

    s256 = find(cells, "slow", "pixgate", 256)
    d256 = find(cells, "slow", "direct", 256)
    f256 = find(cells, "slow", "floor", 256)

    def slow() -> Judged:
        assert s256 is not None and d256 is not None
        ratio = s256["little_rps"] / d256["little_rps"] if d256["little_rps"] else 0.0
        return (
            f"{ratio:.3f}x ({s256['little_rps']:.1f} vs {d256['little_rps']:.1f} req/s by "
            f"c/mean latency; wrk {s256['rps']:.1f} vs {d256['rps']:.1f}), "
            f"p99 {s256['p99_ms']:.0f} ms",
            ratio >= 0.98 and s256["p99_ms"] < 1300 and not s256["errors"],
            clean(s256, d256),
            f"p99 {f256['p99_ms']:.0f} ms" if f256 else "-",
        )

    need("slow 1 s c=256", ">= 0.98x direct throughput, p99 < 1.3 s", [s256, d256], slow)

    polls = {c["target"]: c for c in cells if c["scenario"] == "poll"}
    poll, poll_floor = polls.get("pixgate"), polls.get("floor")

    def polling() -> Judged:
        assert poll is not None
        ok = (
            poll["requests"] == poll["c"]
            and not poll["errors"]
            and poll["cpu_pct"] < 25
            and poll["peak_rss_mib"] < 150
        )
        # The floor doing the same submit and polls shows whether the target is within reach
        # of aiohttp at all.
        floor = _poll_figures(poll_floor) if poll_floor else "-"
        return _poll_figures(poll), ok, clean(poll, poll_floor), floor

    need(
        f"{POLL_JOBS} concurrent polling jobs",
        "all complete, < 25% of one core, < 150 MiB RSS",
        [poll],
        polling,
    )

    out += heavy_targets(cells, systems)
    gw, fl = systems.get("pixgate", {}), systems.get("floor", {})
    if gw.get("status") == "ok":
        idle, started = gw["idle_rss_mib"], gw["startup_median_s"]
        fl_ok = fl.get("status") == "ok"
        fl_idle = f"{fl['idle_rss_mib']:.1f} MiB" if fl_ok else "-"
        fl_start = f"{fl['startup_median_s']:.2f} s" if fl_ok else "-"
        need("idle RSS", "<= 60 MiB", [], lambda: (f"{idle:.1f} MiB", idle <= 60, "", fl_idle))
        runs = ", ".join(f"{s:.2f}" for s in gw["startup_s"])
        shipped = gw.get("shipped_providers")
        # Results from before the bench loaded every shipped provider do not count them.
        loaded = (
            f"; all {shipped} shipped providers loaded"
            if shipped
            else "; bench config only (openai, bench-poll), not every shipped provider"
        )
        need(
            "start to healthy",
            "<= 1.5 s with every shipped provider loaded",
            [],
            lambda: (f"{started:.2f} s (median of {runs}){loaded}", started <= 1.5, "", fl_start),
        )
    return out


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    systems = results["systems"]
    lines = [
        f"# pixgate benchmark ({'quick' if meta['quick'] else 'full'} run)",
        "",
        f"- when: {meta['started']} (took {meta['elapsed_s']:.0f} s); host: {meta['host']}",
        f"- pixgate: {meta['pixgate']}",
        f"- python {meta['python']}, aiohttp {meta['aiohttp']}, uvloop in upstream/load: "
        f"{meta['uvloop'] or 'no'}; load tool: {meta['load_tool']}",
        f"- pinning: {meta['pinning']}",
        f"- cells: {meta['cell_s']} s each after a {meta['warmup_s']} s warm-up at the same "
        f"concurrency; closed loop (each connection sends its next request when the last answer "
        f"arrives)",
        f"- small cells of the floor, pixgate and LiteLLM: {meta.get('processes', 1)} fresh "
        "process(es) of each, each with its own warm-up; each measure is the median over them "
        "and the CPU/req targets are judged on the medians",
        f"- load average at start: {meta['loadavg_start']}, at end: {meta['loadavg_end']}",
        f"- file-descriptor limit of the bench and its children: {meta.get('fd_limit', '?')} "
        "(raised to the hard limit by the bench itself)",
        "",
        "## Targets",
        "",
        "| target | threshold | measured | floor | result | note |",
        "|---|---|---|---|---|---|",
    ]
    for t in results["targets"]:
        lines.append(
            f"| {t['name']} | {t['threshold']} | {_cell(t['measured'])} | "
            f"{_cell(t.get('floor', '-'))} | **{t['result']}** "
            f"| {_cell(t['note'])} |"
        )
    lines += [
        "",
        "## Start-up and idle memory",
        "",
        "| gateway | status | version | start to healthy (s), median | idle RSS (MiB) | "
        "RSS at the end (MiB) | pinned to |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("pixgate", "pixgate-2w", "pixgate-s3", "pixgate-redis", "floor", "litellm"):
        s = systems.get(name, {})
        lines.append(
            f"| {name} | {s.get('status', 'skipped')} | {s.get('version', '-')} | "
            f"{_f(s.get('startup_median_s'), 2)} | {_f(s.get('idle_rss_mib'))} | "
            f"{_f(s.get('final_rss_mib'))} | {s.get('affinity', '-')} |"
        )
    lines += [
        "",
        "## Cells",
        "",
        "Systems: `direct` = the load generator calls the test upstream itself; `floor` = a "
        "minimal aiohttp pass-through proxy (bench/nullproxy.py; for poll, the same submit and "
        "polls as pixgate, hard-coded); `pixgate`; `pixgate-2w` = "
        "`pixgate serve --workers 2`, allowed on every core (with 2 cores, its second worker "
        "shares core 1 with the upstream and the load generator); `litellm` = LiteLLM's proxy, "
        "one worker. All gateways get the same request body.",
        "",
        "`+p50` is the gateway's p50 minus direct p50 for the same cell. CPU and RSS are the "
        "gateway's (whole process tree), measured over the cell only. `waited %` is the time the "
        "gateway was runnable but another process had its core (schedstat run delay): high "
        "values mean a noisy machine, not a slow gateway. `core 1 %` is upstream + load "
        "generator CPU, showing when the load side itself is the limit. The small cells of "
        "floor, pixgate and LiteLLM give each measure's median over their processes (next "
        "table).",
        "",
        "| scenario | c | system | tool | req/s | p50 ms | p99 ms | errors | +p50 ms | "
        "CPU ms/req | CPU % | waited % | peak RSS MiB | core 1 % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in results["cells"]:
        gateway = c["target"] != "direct"
        lines.append(
            f"| {c['scenario']} | {c['c']} | {c['target']} | {c['tool']} | {c['rps']:.1f} | "
            f"{c['p50_ms']:.2f} | {c['p99_ms']:.2f} | {c['errors']} | "
            f"{_f(c.get('added_p50_ms'), 2)} | "
            f"{_f(c.get('cpu_ms_per_req'), 3) if gateway else '-'} | "
            f"{_f(c.get('cpu_pct'), 0) if gateway else '-'} | "
            f"{_f(c.get('waited_pct'), 0) if gateway else '-'} | "
            f"{_f(c.get('peak_rss_mib')) if gateway else '-'} | "
            f"{_f(c.get('core1_pct'), 0)} |"
        )
    lines += table(results["cells"])
    pairs = [
        (c, find(results["cells"], c["scenario"], "floor", c["c"]))
        for c in results["cells"]
        if c["target"] == "pixgate"
    ]
    pairs = [(g, f) for g, f in pairs if f is not None and g.get("cpu_ms_per_req") is not None]
    if pairs:
        lines += [
            "",
            "## pixgate's own cost above the aiohttp floor",
            "",
            "The floor (bench/nullproxy.py) reads the body, POSTs it to the upstream through one "
            "ClientSession and returns the answer, on the same event loop and core as pixgate; "
            "for poll it does the bench-poll submit and polls itself (ms per job). "
            "The difference is what routing, validation, templates, result handling and logging "
            "cost.",
            "",
            "| scenario | c | pixgate CPU ms/req | floor CPU ms/req | pixgate's own ms/req | "
            "pixgate req/s | floor req/s |",
            "|---|---|---|---|---|---|---|",
        ]
        for g, f in pairs:
            assert f is not None
            own = g["cpu_ms_per_req"] - (f.get("cpu_ms_per_req") or 0.0)
            lines.append(
                f"| {g['scenario']} | {g['c']} | {g['cpu_ms_per_req']:.3f} | "
                f"{_f(f.get('cpu_ms_per_req'), 3)} | {own:.3f} | {g['rps']:.0f} | "
                f"{f['rps']:.0f} |"
            )
    if results.get("notes"):
        lines += ["", "## Notes", ""]
        lines += [f"- {n}" for n in results["notes"]]
    lines.append("")
    return "\n".join(lines)


def targets_as_dicts(targets: list[Target]) -> list[dict[str, str]]:
    return [asdict(t) for t in targets]
