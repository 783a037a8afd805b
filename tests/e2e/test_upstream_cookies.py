"""Cookies an upstream sets are not kept: the gateway is stateless towards its providers.

A session cookie (a provider's bot check, a load balancer's affinity) set on one client's
request must not ride along on the next client's, or with another pool key, or with another
relay client's own key. The upstream is reached by host name (`localhost`): a cookie jar keeps
no cookies for bare IP addresses, so an IP would hide the leak."""

from __future__ import annotations

from pathlib import Path

import openai
from aiohttp import web

from tests.e2e.providers import config_dir, single
from tests.gateway import run_gateway
from tests.upstreams import serve_upstream

COOKIES = web.AppKey("cookies", list[str | None])


async def _generations(request: web.Request) -> web.Response:
    request.app[COOKIES].append(request.headers.get("Cookie"))
    response = web.json_response({"created": 1, "data": [{"url": "https://img.test/a.png"}]})
    response.set_cookie("upstream_session", "client-a-affinity", path="/")
    return response


async def test_a_cookie_from_one_answer_is_not_sent_with_the_next_request(
    tmp_path: Path,
) -> None:
    app = web.Application()
    app[COOKIES] = []
    app.router.add_post("/v1/images/generations", _generations)
    root = config_dir(tmp_path, ["openai"], single("openai", "gpt-image-1"))
    async with serve_upstream(app) as base:
        env = {
            "OPENAI_BASE_URL": base.replace("127.0.0.1", "localhost") + "/v1",
            "OPENAI_API_KEYS": "sk-proj-" + "A" * 40 + ",sk-proj-" + "B" * 40,
        }
        async with run_gateway(root, tmp_path / "files", env) as gw:
            async with openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0) as sdk:
                for _ in range(3):
                    result = await sdk.images.generate(
                        model="m", prompt="a fox", response_format="url"
                    )
                    assert result.data[0].url == "https://img.test/a.png"
    assert app[COOKIES] == [None, None, None]
