"""A fan-out step: its sub-steps once per item of a list, items in parallel up to a bound.

The executor runs each item's steps; this module picks the items, bounds the concurrency and
keeps the order. An item that fails is reported as its failure, in its place, so the caller can
keep the other items' images (the response then says how many are missing)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ...dsl.spec import FanOutStep
from ...rawtext import plain
from ..routing.failures import FINAL_KINDS, UpstreamFailure

# Runs one item's steps with the given context; returns what they produced.
RunItem = Callable[[dict[str, Any]], Awaitable[Any]]


def items_of(step: FanOutStep, ctx: Mapping[str, Any]) -> list[Any]:
    """The items, limited; none is a failure (there is nothing to make images from)."""
    spec = step.fan_out
    found = plain(spec.items.search(ctx))
    items = [] if found is None else found if isinstance(found, list) else [found]
    limit = ctx.get("n") if spec.limit_n else spec.limit
    if isinstance(limit, int) and limit >= 0:
        items = items[:limit]
    if not items:
        raise UpstreamFailure(
            "upstream", f"step '{step.name}': nothing to fan out over (`{spec.items.source}`)"
        )
    return items


def loop_vars(index: int, length: int) -> dict[str, Any]:
    return {
        "index0": index,
        "index": index + 1,
        "first": index == 0,
        "last": index == length - 1,
        "length": length,
    }


async def fan_out(
    step: FanOutStep, ctx: Mapping[str, Any], run_item: RunItem
) -> list[tuple[Any, dict[str, Any]] | UpstreamFailure]:
    """Per item, in item order: (what `run_item` returned, the item's own step values), or
    the item's failure. Every item failing raises the most telling failure."""
    items = items_of(step, ctx)
    gate = asyncio.Semaphore(step.fan_out.parallel)
    outer: dict[str, Any] = ctx["steps"]

    async def one(index: int, item: Any) -> tuple[Any, dict[str, Any]]:
        async with gate:
            own: dict[str, Any] = dict(outer)
            item_ctx = {
                **ctx,
                step.fan_out.name: item,
                "loop": loop_vars(index, len(items)),
                "steps": own,
            }
            produced = await run_item(item_ctx)
            return produced, {k: v for k, v in own.items() if k not in outer}

    done = await asyncio.gather(
        *(one(i, item) for i, item in enumerate(items)), return_exceptions=True
    )
    out: list[tuple[Any, dict[str, Any]] | UpstreamFailure] = []
    for entry in done:
        if isinstance(entry, UpstreamFailure):
            out.append(entry)
        elif isinstance(entry, BaseException):
            raise entry
        else:
            out.append(entry)
    failures = [entry for entry in out if isinstance(entry, UpstreamFailure)]
    if len(failures) == len(out):
        raise next((f for f in failures if f.kind in FINAL_KINDS), failures[-1])
    return out
