"""What every target of the bench report is judged with: its row, and reading cells."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Cell = dict[str, Any]


@dataclass(slots=True)
class Target:
    name: str
    threshold: str
    measured: str
    result: str  # "pass" | "fail" | "n/a"
    note: str = ""
    floor: str = "-"  # the aiohttp floor's value for the same measure, measured in the same run


def find(cells: list[Cell], scenario: str, target: str, c: int) -> Cell | None:
    for cell in cells:
        if cell["scenario"] == scenario and cell["target"] == target and cell["c"] == c:
            return cell
    return None


def verdict(ok: bool) -> str:
    return "pass" if ok else "fail"


def clean(*cells: Cell | None) -> str:
    """Why a cell cannot be trusted for a target ('' when it can)."""
    bad = [c for c in cells if c is not None and c.get("errors")]
    return "; ".join(
        f"{c['target']} had {c['errors']} errors"
        + (f" ({c['sample_error']})" if c.get("sample_error") else "")
        for c in bad
    )


def cpu(cell: Cell | None) -> float:
    return float((cell or {}).get("cpu_ms_per_req") or 0.0)
