"""Hostile `Retry-After` values (issue 12, item 2): `inf` was a 500 and a key cooled forever,
`1e12` put a key out for 31,700 years. Whatever an upstream sends, nothing raises, and the
key's cooldown and the client's Retry-After stay within the provider's `max_cooldown`."""

from __future__ import annotations

import math
from pathlib import Path

import aiohttp
import openai
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.api.errors import from_failure
from engine.dsl.spec import ProviderPolicy
from engine.runtime.routing import retryafter
from engine.runtime.routing.failures import UpstreamFailure
from engine.runtime.routing.keys import KeyPools
from tests.e2e.providers import config_dir
from tests.gateway import run_gateway
from tests.upstreams import serve_upstream

NOW = 1_780_000_000.0  # a fixed wall clock: Thu, 28 May 2026
POLICY = ProviderPolicy(max_cooldown=300.0)
HOSTILE = [
    "inf", "Infinity", "-inf", "nan", "NaN", "-1", "-0", "1e12", "1e308", "9" * 400,
    "1" * 5000, "0x10", "1_000", " 12 ", "12abc", "\x00", "３", "٣", "",
    "Fri, 31 Dec 99999 23:59:59 GMT", "Mon, 01 Jan 9999 00:00:00 GMT",
    "Thu, 01 Jan 1970 00:00:00 GMT", "Sun, 06 Nov 1994 08:49:37 +9999",
    "Sun, 06 Nov 1994 99:99:99 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
    "Sun, 06 Nov 1994 08:49:37 GMT" + " " * 10_000,
]  # fmt: skip


def cooldown_after(header: str) -> float:
    """The key's cooldown after an upstream 429 with this Retry-After."""
    clock = [0.0]
    pools = KeyPools(clock=lambda: clock[0], wall=lambda: NOW)
    wait = retryafter.from_headers({"retry-after": header}, wall=lambda: NOW)
    pools.failed("p", "k", UpstreamFailure("rate_limited", "slow down", 429, wait), POLICY)
    return pools.health("p", "k").until


def check(header: str) -> None:
    wait = retryafter.from_headers({"retry-after": header}, wall=lambda: NOW)
    assert wait is None or (math.isfinite(wait) and 0.0 <= wait <= retryafter.CEILING)
    assert 0.0 <= cooldown_after(header) <= POLICY.max_cooldown
    failure = UpstreamFailure("rate_limited", "slow down", 429, wait)
    failure.retry_after = retryafter.clamp(failure.retry_after, POLICY.max_cooldown)
    sent = from_failure(failure).headers.get("Retry-After")
    assert sent is None or 1 <= int(sent) <= POLICY.max_cooldown


@pytest.mark.parametrize("header", HOSTILE, ids=[f"{i}-{h[:20]!r}" for i, h in enumerate(HOSTILE)])
def test_hostile_values_never_raise_and_stay_within_max_cooldown(header: str) -> None:
    check(header)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80) | st.from_regex(r"[ -~]{0,40}", fullmatch=True))
def test_any_header_string_is_safe(header: str) -> None:
    check(header)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("1e12", None),  # not delta-seconds
        ("9" * 400, retryafter.CEILING),  # a number too large: as long as we believe
        ("Thu, 28 May 2026 20:26:40 GMT", 0.0),  # NOW: no wait
        ("Thu, 28 May 2026 20:28:40 GMT", 120.0),  # IMF-fixdate, two minutes on
        ("Thursday, 28-May-26 20:28:40 GMT", 120.0),  # obsolete RFC 850 form
        ("Thu May 28 20:28:40 2026", 120.0),  # asctime form
        ("Fri, 31 Dec 99999 23:59:59 GMT", None),
    ],
)
def test_rfc_9110_forms(header: str, seconds: float | None) -> None:
    assert retryafter.parse(header, wall=lambda: NOW) == seconds


def test_clamped_to_max_cooldown() -> None:
    assert cooldown_after("1000000") == POLICY.max_cooldown
    assert cooldown_after("Mon, 01 Jan 9999 00:00:00 GMT") == POLICY.max_cooldown


async def test_a_429_with_retry_after_inf_is_a_429_and_the_key_returns(tmp_path: Path) -> None:
    """End to end: one key is told `inf`, the other 10**30 seconds; the client sees 429 (not
    500) with a bounded Retry-After, and neither key is out for longer than max_cooldown."""
    calls = 0

    async def generations(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        await request.read()
        return web.json_response(
            {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
            status=429,
            headers={"Retry-After": "inf" if calls == 1 else "9" * 30},
        )

    app = web.Application()
    app.router.add_post("/v1/images/generations", generations)
    async with serve_upstream(app) as base:
        env = {
            "OPENAI_BASE_URL": f"{base}/v1",
            "OPENAI_API_KEYS": f"sk-proj-{'R' * 40},sk-proj-{'S' * 40}",
            "PIXGATE_ADMIN_KEY": "admin-key-0123456789",
        }
        routes = {
            "routes": {"m": {"targets": [{"provider": "openai", "model": "gpt-image-1"}]}},
            "providers": {"openai": {"max_cooldown": "5s"}},
        }
        async with (
            run_gateway(config_dir(tmp_path, ["openai"], routes), tmp_path / "f", env) as gw,
            openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0) as sdk,
            aiohttp.ClientSession() as http,
        ):
            with pytest.raises(openai.RateLimitError) as err:
                await sdk.images.generate(model="m", prompt="x")
            assert 1 <= int(err.value.response.headers["retry-after"]) <= 5
            admin = {"Authorization": "Bearer admin-key-0123456789"}
            async with http.get(f"{gw.url}/admin/keys", headers=admin) as resp:
                keys = (await resp.json())["providers"]["openai"]["keys"]
            assert calls == 2
            assert [k["state"] for k in keys] == ["cooling_down"] * 2
            assert all(k["cooldown_remaining_s"] <= 5 for k in keys)
