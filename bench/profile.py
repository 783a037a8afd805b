"""Sampling profiles of the gateway with py-spy (`python -m bench.run --profile`).

py-spy records the gateway during each measured cell (`--gil --nonblocking`: only the thread
that holds the GIL, without pausing the process), as collapsed stacks. `summarize` turns them
into the functions that use the most samples, by self time and inclusive time.

`python -m bench.profile FILE.txt [--top N]` summarizes a saved profile again.
"""

from __future__ import annotations

import argparse
import shutil
from collections import Counter
from pathlib import Path


def available() -> bool:
    return shutil.which("py-spy") is not None


def command(pid: int, seconds: float, out: Path, rate: int = 250) -> list[str]:
    return [
        "py-spy",
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        str(rate),
        "--gil",
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        str(out),
    ]


def summarize(raw: Path, top: int = 25) -> str:
    """Top functions by self and inclusive share of the samples in a collapsed-stack file."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return f"{raw.name}: no samples\n"
    lines = [f"{raw.name}: {total} samples (GIL holder only)", "", "self:"]
    lines += [f"  {n / total * 100:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive, pixgate frames (engine/):"]
    ours = [(f, n) for f, n in inclusive.most_common() if "engine/" in f]
    lines += [f"  {n / total * 100:5.1f}%  {f}" for f, n in ours[: top * 2]]
    lines += ["", "inclusive, other frames:"]
    others = [(f, n) for f, n in inclusive.most_common() if "engine/" not in f]
    lines += [f"  {n / total * 100:5.1f}%  {f}" for f, n in others[:top]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="summarize a py-spy raw (collapsed) profile")
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    print(summarize(args.file, args.top), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
