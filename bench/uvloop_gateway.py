"""`python -m bench.uvloop_gateway serve ...`: pixgate's own CLI on uvloop's event loop.

Evidence for a proposed engine change (use uvloop when importable); pixgate itself is unchanged.
`python -m bench.run --gateway-uvloop` starts pixgate through this.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

from engine.cli import main

asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
raise SystemExit(main(sys.argv[1:]))
