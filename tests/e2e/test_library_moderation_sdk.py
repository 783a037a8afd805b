"""DashScope, Zhipu and Ideogram beyond the library's generic cases, through the openai SDK
against their fake upstreams: an async task polled to the end, moderation that arrives in a
failed task or as unsafe images, quota that arrives as a 429, and an inpainting mask."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from PIL import Image

from tests.e2e.library import CASES, Case
from tests.e2e.providers import config_dir, single
from tests.gateway import run_gateway
from tests.upstreams import dashscope as fake_dashscope
from tests.upstreams import ideogram as fake_ideogram
from tests.upstreams import serve_upstream
from tests.upstreams import zhipu as fake_zhipu


def case_of(provider: str) -> Case:
    return next(c for c in CASES if c.provider == provider)


def png(width: int, height: int, alpha: int = 255) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (width, height), (200, 30, 30, alpha)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Any]:
    """(case, model) -> (sdk, fake app) with route `m` on the case's fake upstream."""
    stack: list[Any] = []

    async def make(case: Case, model: str) -> tuple[openai.AsyncOpenAI, Any]:
        app = case.make_app(case.key)
        upstream = serve_upstream(app)
        base = await upstream.__aenter__()
        stack.append(upstream)
        cfg = config_dir(tmp_path, [case.provider], single(case.provider, model))
        gw_cm = run_gateway(cfg, tmp_path / "files", case.env(base, case.key))
        gw = await gw_cm.__aenter__()
        stack.append(gw_cm)
        sdk = openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=30)
        stack.append(sdk)
        return sdk, app

    yield make
    for item in reversed(stack):
        if isinstance(item, openai.AsyncOpenAI):
            await item.close()
        else:
            await item.__aexit__(None, None, None)


async def test_dashscope_polls_the_task_and_revises_the_prompt(gateway: Any) -> None:
    sdk, app = await gateway(case_of("dashscope"), "wan2.2-t2i-plus")
    result = await sdk.images.generate(
        model="m", prompt="a koi pond", n=2, size="2048x1024", response_format="b64_json",
        extra_body={"seed": 11, "prompt_extend": False},
    )  # fmt: skip
    fake = fake_dashscope.state(app)
    submit = fake.calls("submit")[0].json
    assert submit["parameters"] == {"size": "1440*720", "n": 2, "seed": 11, "prompt_extend": False}
    assert len(fake.calls("poll")) == 2  # PENDING once, then SUCCEEDED
    assert [d.revised_prompt for d in result.data] == ["a koi pond, detailed"] * 2
    sizes = [Image.open(io.BytesIO(base64.b64decode(d.b64_json or ""))).size for d in result.data]
    assert sizes == [(1440, 720)] * 2 and fake.rejections == []


@pytest.mark.parametrize(
    ("kind", "status", "code", "says"),
    [
        ("output_moderation", 400, "content_policy_violation", "inappropriate content"),
        ("task_failed", 502, "upstream_error", "the worker crashed"),
    ],
)
async def test_dashscope_failed_task(
    gateway: Any, kind: str, status: int, code: str, says: str
) -> None:
    sdk, app = await gateway(case_of("dashscope"), "wan2.2-t2i-flash")
    fake_dashscope.state(app).fail_next(kind, message="the worker crashed")
    with pytest.raises(openai.APIStatusError) as err:
        await sdk.images.generate(model="m", prompt="a beach")
    assert (err.value.status_code, err.value.code) == (status, code)
    assert says in err.value.message


async def test_zhipu_arrears_is_quota_not_a_rate_limit(gateway: Any) -> None:
    sdk, app = await gateway(case_of("zhipu"), "cogview-4")
    fake_zhipu.state(app).fail_next("arrears")
    with pytest.raises(openai.RateLimitError) as err:
        await sdk.images.generate(model="m", prompt="a cat")
    assert err.value.code == "insufficient_quota"
    assert "in arrears" in err.value.message
    assert len(fake_zhipu.state(app).calls("generate")) == 1


async def test_ideogram_unsafe_images_are_a_content_policy_refusal(gateway: Any) -> None:
    sdk, app = await gateway(case_of("ideogram"), "ideogram-v3")
    fake_ideogram.state(app).fail_next("unsafe")
    with pytest.raises(openai.BadRequestError) as err:
        await sdk.images.generate(model="m", prompt="a crowd", n=2)
    assert err.value.code == "content_policy_violation"


async def test_ideogram_edit_sends_a_black_means_edit_mask(gateway: Any) -> None:
    sdk, app = await gateway(case_of("ideogram"), "ideogram-v3-quality")
    mask = io.BytesIO()
    shape = Image.new("RGBA", (96, 64), (0, 0, 0, 255))
    shape.paste((0, 0, 0, 0), (0, 0, 48, 64))  # OpenAI's convention: transparent = edit here
    shape.save(mask, "PNG")
    result = await sdk.images.edit(
        model="m", prompt="a red balloon", image=("in.png", png(96, 64), "image/png"),
        mask=("mask.png", mask.getvalue(), "image/png"), response_format="b64_json",
    )  # fmt: skip
    assert Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json or ""))).size == (96, 64)
    call = fake_ideogram.state(app).calls("edit")[0]
    sent = Image.open(io.BytesIO(call.files("mask")[0].data)).convert("L")
    assert sent.getpixel((10, 10)) == 0 and sent.getpixel((80, 10)) == 255  # black = edit
    assert call.field("rendering_speed") == "QUALITY"
