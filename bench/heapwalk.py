"""What a waiting request holds, for bench/poll_memory.py: a tracemalloc diff grouped by
where it was allocated, a walk of one request's own objects, its chain of coroutines, and the
allocators' totals (pymalloc's and glibc's)."""

from __future__ import annotations

import asyncio
import collections
import ctypes
import gc
import os
import sys
import tempfile
import tracemalloc
import types
from pathlib import Path
from typing import Any

OWN = ("/engine/", "nullproxy")  # the gateway's own code, pixgate's or the floor's


def types_now() -> collections.Counter[str]:
    gc.collect()
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


def chains(detail: bool) -> None:
    """Each distinct chain of coroutines the gateway's tasks wait in (innermost last), with
    each coroutine's size and its frame's locals, for the first task of each chain."""
    seen: dict[tuple[str, ...], int] = {}
    shown = set()
    for task in asyncio.all_tasks():
        chain = []
        coro: Any = task.get_coro()
        while coro is not None and hasattr(coro, "cr_frame"):
            chain.append(coro)
            coro = coro.cr_await
        key = tuple(c.__qualname__ for c in chain)
        seen[key] = seen.get(key, 0) + 1
        if not detail or key in shown or seen[key] < 10:
            continue
        shown.add(key)
        total = 0
        print(f"chain of {len(chain)} coroutines (task {task.get_name()}), then {coro!r:.80}")
        for c in chain:
            frame = c.cr_frame
            local = frame.f_locals if frame is not None else {}  # makes a frame object
            size = sys.getsizeof(c)
            total += size
            names = ", ".join(f"{k}:{type(v).__name__}" for k, v in local.items())
            line = frame.f_lineno if frame else "-"
            print(f"  {size:5d} B {c.__qualname__} line {line}: {names}"[:260])
        print(f"  {total} B in coroutine objects")
    for key, count in sorted(seen.items(), key=lambda kv: -kv[1])[:6]:
        print(f"  {count} tasks in {len(key)} coroutines: ... > {' > '.join(key[-3:])}")


def walk(baseline: set[int]) -> None:
    """What one waiting request holds on its own: every object reachable from its handler
    task and not from another request's or from the warm state (`baseline`: ids of the gc
    objects then), by type and by the frame local that reaches it first (outermost frame
    first). Sizes are sys.getsizeof (a dict's, a list's own storage included)."""
    stop = (types.ModuleType, type, types.FunctionType, types.CodeType, asyncio.AbstractEventLoop)
    tasks = [t for t in asyncio.all_tasks() if "_handle_request" in repr(t.get_coro())]
    if len(tasks) < 2:
        return

    def reach(task: Any) -> dict[int, tuple[Any, str]]:
        """Objects reached from each coroutine of the chain (outermost first), then the
        task; gc.get_referents, so that no frame object is made for a look at its locals."""
        found: dict[int, tuple[Any, str]] = {}
        chain = []
        coro = task.get_coro()
        while coro is not None and hasattr(coro, "cr_await"):
            chain.append(coro)
            coro = coro.cr_await
        blocked = {id(c) for c in chain} | {id(task)}
        for root in [*chain, task]:
            label = getattr(root, "__qualname__", "task")
            found[id(root)] = (root, label)
            todo = list(gc.get_referents(root))
            while todo:
                o = todo.pop()
                if id(o) in found or id(o) in baseline or id(o) in blocked or isinstance(o, stop):
                    continue
                if isinstance(o, asyncio.Task):
                    continue
                found[id(o)] = (o, label)
                todo.extend(gc.get_referents(o))
        return found

    a, b = reach(tasks[0]), reach(tasks[1])
    own = {k: v for k, v in a.items() if k not in b}
    by_type: collections.Counter[str] = collections.Counter()
    by_label: collections.Counter[str] = collections.Counter()
    detail: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for o, label in own.values():
        if type(o).__name__ == "frame":
            continue  # made by looking (cr_frame, logging's findCaller), not by serving
        size = sys.getsizeof(o)
        what = type(o).__qualname__
        if isinstance(o, dict):
            what += f"[{len(o)}: {','.join(map(str, list(o)[:4]))}]"
        elif isinstance(o, str | bytes):
            what += f"[{o[:20]!r}]"
        detail[label][what] += size
        by_type[type(o).__qualname__] += size
        by_label[label] += size
    print(f"one request holds {sum(by_type.values())} B in {len(own)} objects of its own")
    for name, size in by_type.most_common(25):
        print(f"  {size:6d} B  {name}")
    print("by what reaches it first (outermost frame first):")
    for name, size in by_label.most_common(45):
        parts = ", ".join(f"{k} {v}" for k, v in detail[name].most_common(8))
        print(f"  {size:6d} B  {name}: {parts}")


def mallocstats() -> None:
    """pymalloc's totals (sys._debugmallocstats) and glibc's (mallinfo2)."""
    py, lib = allocators()
    print(
        f"pymalloc: {py['arenas']} arenas, {py['allocated']:,} B in allocated blocks, "
        f"{py['available']:,} B in available blocks"
    )
    print(
        f"glibc: arena {lib['arena'] >> 10} KiB, in use {lib['uordblks'] >> 10} KiB, free "
        f"{lib['fordblks'] >> 10} KiB, mmapped {lib['hblkhd'] >> 10} KiB ({lib['hblks']} blocks)"
    )


def allocators() -> tuple[dict[str, int], dict[str, int]]:
    """pymalloc's arenas and bytes in allocated and available blocks; glibc's mallinfo2."""
    with tempfile.TemporaryFile("w+") as out:
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        lines = out.read().splitlines()
    keys = {
        "# arenas allocated current": "arenas",
        "# bytes in allocated blocks": "allocated",
        "# bytes in available blocks": "available",
    }
    py = {
        name: int(line.split("=")[1].replace(",", ""))
        for line in lines
        for start, name in keys.items()
        if line.startswith(start)
    }

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                "uordblks", "fordblks", "keepcost",
            )
        ]  # fmt: skip

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    mi = libc.mallinfo2()
    return py, {name: getattr(mi, name) for name, _ in MallInfo2._fields_}


def report(
    before: tracemalloc.Snapshot,
    after: tracemalloc.Snapshot,
    types_before: collections.Counter[str],
    types_after: collections.Counter[str],
    n: int,
    top: int,
) -> None:
    skip = [tracemalloc.Filter(False, tracemalloc.__file__)]
    before, after = before.filter_traces(skip), after.filter_traces(skip)
    diff = after.compare_to(before, "traceback")
    total = sum(d.size_diff for d in diff)
    print(f"python heap: {total / n:.0f} B/job over the warm state")
    for stat in sorted(diff, key=lambda d: -d.size_diff)[:top]:
        frames = [f"{Path(f.filename).name}:{f.lineno}" for f in stat.traceback]
        where = " < ".join(frames[-1::-1][:6])
        print(f"  {stat.size_diff / n:8.0f} B/job {stat.count_diff / n:6.2f} blocks  {where}")
    big = [t for t in after.traces if t.size > 512]
    big_before = [t for t in before.traces if t.size > 512]
    grown = sum(t.size for t in big) - sum(t.size for t in big_before)
    print(
        f"blocks over 512 B (malloc's, not pymalloc's): {(len(big) - len(big_before)) / n:.2f} "
        f"a job, {grown / n:.0f} B/job"
    )
    sites: collections.Counter[str] = collections.Counter()
    for t in big:
        own = [f for f in t.traceback if any(o in f.filename for o in OWN)]
        f = (own or list(t.traceback))[-1]
        sites[f"{Path(f.filename).name}:{f.lineno} ({t.size} B)"] += 1
    for site, count in sites.most_common(12):
        print(f"  {count / n:6.2f} a job  {site}")
    print("by the innermost frame of the gateway's own code (or the allocation site):")
    mine: collections.Counter[str] = collections.Counter()
    blocks: collections.Counter[str] = collections.Counter()
    for stat in diff:
        frames = list(stat.traceback)
        own = [f for f in frames if any(o in f.filename for o in OWN)]
        where = (own or frames)[-1]
        key = f"{Path(where.filename).parent.name}/{Path(where.filename).name}:{where.lineno}"
        mine[key] += stat.size_diff
        blocks[key] += stat.count_diff
    for key, size in mine.most_common(top):
        print(f"  {size / n:8.0f} B/job {blocks[key] / n:6.2f} blocks  {key}")
    print("objects per job by type (gc-tracked):")
    more = {t: (types_after[t] - types_before[t]) / n for t in types_after}
    for name, per in sorted(more.items(), key=lambda kv: -kv[1])[:top]:
        if per >= 0.5:
            print(f"  {per:6.2f} {name}")
