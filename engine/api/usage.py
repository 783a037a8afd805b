"""GET /admin/usage?from=&to=&group_by=client,model[&format=csv]: usage totals per group over
UTC days, as JSON or CSV (also with `Accept: text/csv`), plus each budgeted client's spend."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from aiohttp import web

from ..usage.counters import DIMENSIONS, KEEP_DAYS, MEASURES
from ..usage.windows import day_of
from .errors import ApiError
from .jsonio import json_response
from .keys import STATE
from .metering import METER

DEFAULT_GROUP = ("client", "model")


def _bad(message: str, param: str) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_parameter")


def _date(request: web.Request, name: str, default: dt.date) -> dt.date:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise _bad(f"'{name}' must be a UTC day as YYYY-MM-DD, got {raw[:40]!r}", name) from None


def _group_by(request: web.Request) -> tuple[str, ...]:
    raw = request.query.get("group_by")
    if raw is None or not raw.strip():
        return DEFAULT_GROUP
    names = tuple(n.strip() for n in raw.split(","))
    unknown = [n for n in names if n not in DIMENSIONS]
    if unknown or len(set(names)) != len(names):
        raise _bad(
            f"'group_by' takes distinct names among {', '.join(DIMENSIONS)}, comma-separated",
            "group_by",
        )
    return names


def _wants_csv(request: web.Request) -> bool:
    fmt = request.query.get("format")
    if fmt is not None and fmt not in ("json", "csv"):
        raise _bad("'format' is json or csv", "format")
    if fmt is not None:
        return fmt == "csv"
    accept = request.headers.get("Accept", "")
    return "text/csv" in accept and "application/json" not in accept


async def usage(request: web.Request) -> web.StreamResponse:
    meter = request.app[METER]
    today = dt.date.fromisoformat(day_of(meter.now()))
    last = _date(request, "to", today)
    first = _date(request, "from", last)
    if first > last:
        raise _bad("'from' is after 'to'", "from")
    if (last - first).days >= KEEP_DAYS:
        raise _bad(f"at most {KEEP_DAYS} days at once (usage is kept that long)", "from")
    group_by = _group_by(request)
    as_csv = _wants_csv(request)
    rows = await meter.usage.query(first, last, group_by)
    if as_csv:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*group_by, *MEASURES])
        for row in rows:
            writer.writerow([row[k] for k in (*group_by, *MEASURES)])
        return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8")
    totals: dict[str, Any] = {m: sum(r[m] for r in rows) for m in MEASURES}
    totals["cost_usd"] = round(totals["cost_usd"], 6)
    totals["upstream_seconds"] = round(totals["upstream_seconds"], 3)
    return json_response(
        {
            "object": "usage",
            "from": first.isoformat(),
            "to": last.isoformat(),
            "group_by": list(group_by),
            "data": rows,
            "totals": totals,
            "budgets": await _budgets(request),
        }
    )


async def _budgets(request: web.Request) -> dict[str, Any]:
    """Each budgeted client's caps and what it has spent in the current windows."""
    meter = request.app[METER]
    seen: dict[str, Any] = {}
    for _, client in request.app[STATE].snapshot.clients.entries:
        if client.budget and client.name not in seen:
            spent = await meter.budgets.spent(client.name, client.budget)
            seen[client.name] = {
                "usd_per_day": client.budget.usd_per_day,
                "usd_per_month": client.budget.usd_per_month,
                "spent_today_usd": round(spent["day"], 6) if "day" in spent else None,
                "spent_this_month_usd": round(spent["month"], 6) if "month" in spent else None,
            }
    return seen
