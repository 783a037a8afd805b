"""Which asyncio event loop serves: uvloop when it is installed (about 15% less CPU per
request in bench/), the standard loop otherwise or when PIXGATE_EVENT_LOOP=asyncio."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

LoopFactory = Callable[[], asyncio.AbstractEventLoop]
CHOICES = ("auto", "uvloop", "asyncio")


def loop_factory(choice: str = "auto") -> tuple[LoopFactory, str]:
    """The factory and the name of the loop it makes; `uvloop` insists, `auto` falls back."""
    if choice not in CHOICES:
        raise ValueError(f"PIXGATE_EVENT_LOOP must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if choice == "uvloop":
                raise ValueError("PIXGATE_EVENT_LOOP=uvloop but uvloop is not installed") from None
        else:
            factory: LoopFactory = uvloop.new_event_loop
            return factory, "uvloop"
    return asyncio.new_event_loop, "asyncio"
