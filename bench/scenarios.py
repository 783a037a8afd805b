"""What the bench runs: scenarios, their request bodies, and which cells each system gets."""

from __future__ import annotations

import json
from dataclasses import dataclass

OPENAI_KEY = "sk-proj-bench" + "0" * 24  # matches the openai provider's key_pattern
CLIENT_KEY = "pixgate-bench-client-key"
PROMPT = "a lighthouse at dusk, oil painting (pixgate bench)"
POLL_JOBS = 1000
MANY_OPEN = 5000  # requests held open at once to the 10 s upstream (issue 19)
MANY_POLL = 10_000  # polling jobs at once, each done after 30 s and polled every 2 s


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
    direct: bool = True  # measured against the upstream directly too

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
        if target == "direct" and not self.direct:
            return ()
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
        floor=(16, 64),
        floor_quick=(16,),
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


# The heavy scenarios: part of a full run, in a --quick run only when named in --scenarios.
# Each has its own runner in bench/heavy.py.
MANY_OPEN_SCENARIO = Scenario(
    "long",
    "url",
    f"{MANY_OPEN} requests held open at once to a 10 s upstream (three each, closed loop)",
    cells=(MANY_OPEN,),
    quick=(MANY_OPEN,),
)
MANY_POLL_SCENARIO = Scenario(
    "poll-long",
    "url",
    f"{MANY_POLL} submit-and-poll jobs at once (done after 30 s, polled every 2 s)",
    cells=(MANY_POLL,),
    quick=(MANY_POLL,),
)
STORE = Scenario(
    "store",
    "url",
    "~1.5 MB b64_json answer for a client that asks for url: stored (local disk or S3)",
    cells=(1, 8),
    quick=(1, 8),
    direct=False,
)
# The small answer on its own route, through pixgate with memory state and with Redis state,
# the openai key limited by max_concurrency_per_key (a lease in Redis per attempt): c=1 for
# the added p50, c=16 for the added CPU per request (issue 19).
REDIS = Scenario(
    "redis",
    "url",
    "small answer, max_concurrency_per_key set: memory state against Redis state",
    cells=(1, 16),
    quick=(1, 16),
    direct=False,
)
HEAVY: tuple[Scenario, ...] = (MANY_OPEN_SCENARIO, MANY_POLL_SCENARIO, STORE, REDIS)


def by_name(names: str | None, quick: bool = False) -> tuple[Scenario, ...]:
    if not names:
        return (*SCENARIOS, POLL) if quick else (*SCENARIOS, POLL, *HEAVY)
    wanted = {n.strip() for n in names.split(",") if n.strip()}
    known = {s.name: s for s in (*SCENARIOS, POLL, *HEAVY)}
    unknown = wanted - set(known)
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return tuple(known[n] for n in known if n in wanted)
