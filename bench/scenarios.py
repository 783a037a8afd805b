"""What the bench runs: scenarios, their request bodies, and which cells each system gets."""

from __future__ import annotations

import json
from dataclasses import dataclass

PROMPT = "a lighthouse at dusk, oil painting (pixgate bench)"
POLL_JOBS = 1000


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    response_format: str
    what: str
    cells: tuple[int, ...]  # concurrencies, full run
    quick: tuple[int, ...]  # concurrencies, --quick
    litellm: tuple[int, ...] = ()
    litellm_quick: tuple[int, ...] = ()
    floor: tuple[int, ...] = ()  # bench/nullproxy.py, the aiohttp pass-through floor
    floor_quick: tuple[int, ...] = ()
    # The direct client of `download` gets a URL and must GET the image itself.
    direct_chain: bool = False

    def body(self) -> bytes:
        return json.dumps(
            {
                "model": self.name,
                "prompt": PROMPT,
                "size": "1024x1024",
                "response_format": self.response_format,
            }
        ).encode()

    def concurrencies(self, target: str, quick: bool) -> tuple[int, ...]:
        if target == "litellm":
            return self.litellm_quick if quick else self.litellm
        if target == "floor":
            return self.floor_quick if quick else self.floor
        return self.quick if quick else self.cells


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "small",
        "url",
        "JSON answer with data[].url (~100 B), passed through: the per-request floor",
        cells=(1, 16, 64),
        quick=(1, 64),
        litellm=(1, 16, 64),
        litellm_quick=(64,),
        floor=(1, 16, 64),
        floor_quick=(64,),
    ),
    Scenario(
        "b64",
        "b64_json",
        "~1.5 MB b64_json answer passed through: large-body read, parse, re-encode",
        cells=(1, 16, 64),
        quick=(16, 64),
        litellm=(1, 16),
        floor=(16, 64),
    ),
    Scenario(
        "slow",
        "url",
        "small answer after a fixed 1 s upstream delay: many requests in flight",
        cells=(1, 16, 64, 256),
        quick=(256,),
        litellm=(64, 256),
        floor=(256,),
    ),
    Scenario(
        "download",
        "b64_json",
        "URL answer the gateway downloads (~1.1 MB PNG) and returns as b64_json",
        cells=(1, 16, 64),
        quick=(16,),
        direct_chain=True,
    ),
)

SMALL = next(s for s in SCENARIOS if s.name == "small")
POLL = Scenario(
    "poll",
    "url",
    f"{POLL_JOBS} submit-and-poll jobs at once (done after 1 s, polled every 250 ms)",
    cells=(POLL_JOBS,),
    quick=(POLL_JOBS,),
)


def by_name(names: str | None) -> tuple[Scenario, ...]:
    if not names:
        return (*SCENARIOS, POLL)
    wanted = {n.strip() for n in names.split(",") if n.strip()}
    known = {s.name: s for s in (*SCENARIOS, POLL)}
    unknown = wanted - set(known)
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return tuple(known[n] for n in known if n in wanted)
