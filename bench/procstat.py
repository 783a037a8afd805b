"""CPU time and memory of a process tree, read from /proc (Linux only)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (field 3 onwards)."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        text = fh.read().decode()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def children(pid: int) -> list[int]:
    """Every descendant of `pid` (LiteLLM may fork workers)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree(pid: int) -> list[int]:
    return [pid, *children(pid)]


def run_delay_s(pid: int) -> float:
    """Seconds the process's threads spent runnable but waiting for a CPU (schedstat field 2):
    time other processes took from it on its core."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                total += int(fh.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def status_kib(pid: int, field: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM, ...), 0 when absent."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def affinity(pid: int) -> str:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    return "?"


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (clear_refs value 5, Linux 4.0+); False if not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def tree_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    return total


def tree_kib(pids: list[int], field: str) -> int:
    total = 0
    for pid in pids:
        try:
            total += status_kib(pid, field)
        except OSError:
            continue
    return total


@dataclass(slots=True)
class Usage:
    cpu_s: float
    wall_s: float
    peak_rss_kib: int
    end_rss_kib: int
    waited_s: float = 0.0  # runnable but not running (another process had the core)

    @property
    def cpu_fraction(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


class Watch:
    """CPU and peak RSS of a process tree over a window.

    Peak RSS is the larger of VmHWM (reset at the start when the kernel allows it) and VmRSS
    sampled every `every` seconds from a thread, summed over the tree.
    """

    def __init__(self, pid: int, every: float = 0.05) -> None:
        self.pid = pid
        self.every = every
        self.pids = tree(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._peak = 0
        self._cpu0 = 0.0
        self._wait0 = 0.0
        self._t0 = 0.0
        self.hwm_reset = False

    def __enter__(self) -> Watch:
        self.hwm_reset = all(reset_peak(p) for p in self.pids)
        self._peak = tree_kib(self.pids, "VmRSS")
        self._cpu0 = tree_cpu(self.pids)
        self._wait0 = sum(run_delay_s(p) for p in self.pids)
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self._peak = max(self._peak, tree_kib(self.pids, "VmRSS"))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.usage = Usage(
            cpu_s=tree_cpu(self.pids) - self._cpu0,
            wall_s=time.monotonic() - self._t0,
            peak_rss_kib=max(
                self._peak,
                tree_kib(self.pids, "VmHWM") if self.hwm_reset else 0,
            ),
            end_rss_kib=tree_kib(self.pids, "VmRSS"),
            waited_s=sum(run_delay_s(p) for p in self.pids) - self._wait0,
        )
