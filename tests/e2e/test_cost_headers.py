"""`x-pixgate-cost-usd` against hand-computed list prices: each priced shipped provider file
through its fake upstream and the openai SDK, the token-priced GPT image model from the usage
it reports, and a route's price override."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.library import CASES, Case
from tests.e2e.providers import config_dir, single
from tests.gateway import run_gateway
from tests.upstreams import openai as fake_openai
from tests.upstreams import serve_upstream

OPENAI_KEY = "sk-proj-" + "A" * 40
PROMPT = "a lighthouse at dusk"  # 20 characters: the fake OpenAI counts 5 text tokens

# Each case's price for one image of the size its fake upstream delivers (library.py).
EXPECTED = {
    "together": "0.0027",  # FLUX.1-schnell, per image
    "stability": "0.065",  # sd3.5-large, 6.5 credits
    "fal": "0.019661",  # flux/dev, 0.025 per megapixel x 1024x768 = 0.0196608
    "bfl": "0.04",  # flux-pro-1.1
    "gemini": "0.039",  # gemini-2.5-flash-image
    "imagen": "0.04",  # imagen-4.0-generate-001
    "replicate": "0.003",  # flux-schnell
}
PRICED = [c for c in CASES if c.id in EXPECTED]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Any]:
    """(app, provider, routes, env(base)) -> an SDK client on a gateway in front of the fake."""
    stack: list[Any] = []

    async def make(app: Any, provider: str, routes: dict[str, object], env: Any) -> Any:
        upstream = serve_upstream(app)
        base = await upstream.__aenter__()
        stack.append(upstream)
        gw_cm = run_gateway(config_dir(tmp_path, [provider], routes), tmp_path / "files", env(base))
        gw = await gw_cm.__aenter__()
        stack.append(gw_cm)
        sdk = openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=30)
        stack.append(sdk)
        return sdk

    yield make
    for item in reversed(stack):
        if isinstance(item, openai.AsyncOpenAI):
            await item.close()
        else:
            await item.__aexit__(None, None, None)


async def cost(sdk: Any, n: int = 1, **kwargs: Any) -> str:
    raw = await sdk.images.with_raw_response.generate(model="m", prompt=PROMPT, n=n, **kwargs)
    assert len(raw.parse().data) == n
    return str(raw.headers["x-pixgate-cost-usd"])


def test_every_priced_case_is_exercised() -> None:
    assert {c.id for c in PRICED} == set(EXPECTED)


@pytest.mark.parametrize("case", PRICED, ids=lambda c: c.id)
async def test_list_price_of_each_shipped_provider(gateway: Any, case: Case) -> None:
    sdk = await gateway(
        case.make_app(case.key),
        case.provider,
        single(case.provider, case.model),
        lambda base: case.env(base, case.key),
    )
    assert await cost(sdk, size=case.size, extra_body=case.extra) == EXPECTED[case.id]


def openai_env(base: str) -> dict[str, str]:
    return {"OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEYS": OPENAI_KEY}


async def test_gpt_image_is_priced_from_the_usage_tokens(gateway: Any) -> None:
    app = fake_openai.create_app(expected_key=OPENAI_KEY)
    sdk = await gateway(app, "openai", single("openai", "gpt-image-1"), openai_env)
    # 5 text tokens at $5/1M + 2 x 272 low-quality output tokens at $40/1M
    assert await cost(sdk, n=2, quality="low", size="1024x1024") == "0.021785"


async def test_dall_e_3_by_quality_and_size_and_a_route_override(gateway: Any) -> None:
    app = fake_openai.create_app(expected_key=OPENAI_KEY)
    routes = {
        "routes": {
            "m": {"targets": [{"provider": "openai", "model": "dall-e-3"}]},
            "route-price": {
                "pricing": {"per_image": 0.5},
                "targets": [{"provider": "openai", "model": "dall-e-3"}],
            },
            "target-price": {
                "pricing": {"per_image": 0.5},
                "targets": [
                    {"provider": "openai", "model": "dall-e-3", "pricing": {"per_image": 0.25}}
                ],
            },
        }
    }
    sdk = await gateway(app, "openai", routes, openai_env)
    assert await cost(sdk, quality="hd", size="1792x1024") == "0.12"
    assert await cost(sdk, size="1024x1024") == "0.04"
    raw = await sdk.images.with_raw_response.generate(model="route-price", prompt=PROMPT)
    assert raw.headers["x-pixgate-cost-usd"] == "0.5"  # the route's price, over the file's
    raw = await sdk.images.with_raw_response.generate(model="target-price", prompt=PROMPT)
    assert raw.headers["x-pixgate-cost-usd"] == "0.25"  # the target's, over the route's
