"""The heavy scenarios' targets: many open requests, many polling jobs (issue 19), url with
S3 storage (issue 14), and Redis state against memory state (issue 19)."""

from __future__ import annotations

from typing import Any

from .judging import Cell, Target, clean, cpu, find, verdict
from .scenarios import MANY_OPEN, MANY_POLL


def heavy_targets(cells: list[Cell], systems: dict[str, Any]) -> list[Target]:
    """Many open requests, many polling jobs (issue 19) and url with S3 storage (issue 14)."""
    out: list[Target] = []
    name = f"many open requests ({MANY_OPEN} x 10 s)"
    threshold = ">= 0.98x direct throughput, p99 <= 10.6 s, RSS <= 400 MiB, no errors"
    gw, di = find(cells, "long", "pixgate", MANY_OPEN), find(cells, "long", "direct", MANY_OPEN)
    if gw is None or di is None:
        out.append(Target(name, threshold, "not measured", "n/a", "cell missing"))
    else:
        ratio = gw["rps"] / di["rps"] if di["rps"] else 0.0
        little = di["mean_ms"] / gw["mean_ms"] if gw["mean_ms"] else 0.0
        complete = gw["requests"] == gw.get("expected", gw["requests"])
        ok = (
            ratio >= 0.98
            and gw["p99_ms"] <= 10_600
            and gw["peak_rss_mib"] <= 400
            and not gw["errors"]
            and complete
        )
        measured = (
            f"{ratio:.3f}x ({gw['rps']:.0f} vs {di['rps']:.0f} req/s over the batch; "
            f"{little:.3f}x by mean latency), p99 {gw['p99_ms'] / 1000:.2f} s, "
            f"{gw['peak_rss_mib']:.0f} MiB, {gw['errors']} errors, "
            f"{gw['requests']}/{gw.get('expected', '?')} done, "
            f"upstream held {gw.get('upstream_peak_open', '?')} at once"
        )
        floor = f"direct: p99 {di['p99_ms'] / 1000:.2f} s, {di.get('upstream_peak_open', '?')} open"
        out.append(Target(name, threshold, measured, verdict(ok), clean(gw, di), floor))

    name = f"many polling jobs ({MANY_POLL}, 30 s, polled every 2 s)"
    threshold = "all complete, RSS <= 300 MiB, CPU/job <= 1.1x the floor's"
    gw = find(cells, "poll-long", "pixgate", MANY_POLL)
    fl = find(cells, "poll-long", "floor", MANY_POLL)
    if gw is None or fl is None:
        out.append(Target(name, threshold, "not measured", "n/a", "cell missing"))
    else:
        ratio = cpu(gw) / cpu(fl) if cpu(fl) else float("inf")
        complete = gw["requests"] == gw.get("expected", gw["requests"])
        ok = complete and not gw["errors"] and gw["peak_rss_mib"] <= 300 and ratio <= 1.1
        measured = (
            f"{gw['requests']}/{gw.get('expected', '?')} done in {gw['duration_s']:.0f} s, "
            f"{cpu(gw):.2f} ms CPU/job ({ratio:.2f}x the floor), {gw['peak_rss_mib']:.0f} MiB"
        )
        floor = (
            f"{fl['requests']}/{fl.get('expected', '?')} done, {cpu(fl):.2f} ms CPU/job, "
            f"{fl['peak_rss_mib']:.0f} MiB"
        )
        out.append(Target(name, threshold, measured, verdict(ok), clean(gw, fl), floor))

    s3_cells = [c for c in cells if c["scenario"] == "store" and c["target"] == "pixgate-s3"]
    threshold = "reported beside local storage (no bound)"
    if not s3_cells:
        status = systems.get("pixgate-s3", {}).get("status", "not run")
        out.append(Target("url with S3 storage", threshold, "not measured", "n/a", status))
    for s3 in s3_cells:
        local = find(cells, "store", "pixgate", s3["c"])
        name = f"url with S3 storage, c={s3['c']}"
        if local is None:
            out.append(Target(name, threshold, "not measured", "n/a", "local cell missing"))
            continue
        measured = (
            f"{s3['p50_ms'] - local['p50_ms']:+.2f} ms p50 ({s3['p50_ms']:.2f} vs "
            f"{local['p50_ms']:.2f} ms), {cpu(s3) - cpu(local):+.3f} ms CPU/req "
            f"({cpu(s3):.3f} vs {cpu(local):.3f} ms), peak RSS {s3['peak_rss_mib']:.0f} vs "
            f"{local['peak_rss_mib']:.0f} MiB"
        )
        bad = clean(s3, local)
        out.append(Target(name, threshold, measured, "fail" if bad else "reported", bad))
    return out + redis_targets(cells, systems)


def redis_targets(cells: list[Cell], systems: dict[str, Any]) -> list[Target]:
    """Redis state against memory state, the key under max_concurrency_per_key (issue 19)."""
    out: list[Target] = []
    rows = (
        ("p50", 1, "<= 0.3 ms p50 over memory state", 0.3),
        ("CPU/req", 16, "<= 0.05 ms CPU/req over memory state", 0.05),
    )
    for measure, c, threshold, bound in rows:
        name = f"Redis state: added {measure}, small c={c}, max_concurrency_per_key"
        redis, memory = find(cells, "redis", "pixgate-redis", c), find(cells, "redis", "pixgate", c)
        if redis is None or memory is None:
            status = systems.get("pixgate-redis", {}).get("status", "not run")
            out.append(Target(name, threshold, "not measured", "n/a", f"cell missing ({status})"))
            continue
        if measure == "p50":
            ours, theirs = float(redis["p50_ms"]), float(memory["p50_ms"])
        else:
            ours, theirs = cpu(redis), cpu(memory)
        added, bad = ours - theirs, clean(redis, memory)
        measured = f"{added:+.3f} ms ({ours:.3f} vs {theirs:.3f} ms)"
        ok = added <= bound and not bad
        out.append(Target(name, threshold, measured, verdict(ok), bad, f"memory: {theirs:.3f} ms"))
    return out
