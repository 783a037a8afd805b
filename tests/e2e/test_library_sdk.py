"""The provider library end to end: every provider file of tests/e2e/library.py through the
official openai SDK against its fake upstream: generate as url and as b64_json, edit where the
provider can, and an upstream failure and a content-policy refusal as OpenAI errors."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from PIL import Image

from tests.e2e.library import CASES, Case
from tests.e2e.providers import config_dir, single
from tests.gateway import run_gateway
from tests.openapi import validate_component
from tests.upstreams import bfl as fake_bfl
from tests.upstreams import midjourney as fake_mj
from tests.upstreams import replicate as fake_replicate
from tests.upstreams import serve_upstream
from tests.upstreams.common import RecordedRequest

EDIT_CASES = [c for c in CASES if c.edit_model]


def size_of(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def spec(openai_spec: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's spec (the shared fixture: missing, it fails under CI=true)."""
    return openai_spec


def check_shape(spec: dict[str, Any] | None, component: str, body: Any) -> None:
    if spec is not None:
        validate_component(spec, component, body)


@pytest.fixture
async def library(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """(case, model) -> (sdk, fake app, base URL): the case's fake upstream and a gateway
    routing `m` to the provider's model."""
    stack: list[Any] = []

    async def make(
        case: Case,
        model: str,
        send_to: Callable[[str], str] | None = None,
        env: dict[str, str] | None = None,
    ) -> tuple[openai.AsyncOpenAI, Any, str]:
        """`send_to(base)`: one more origin for the provider's key (auth.send_to)."""
        app = case.make_app(case.key)
        upstream = serve_upstream(app)
        base = await upstream.__aenter__()
        stack.append(upstream)
        routes = single(case.provider, model)
        cfg = config_dir(tmp_path, [case.provider], routes)
        if send_to is not None:
            file = cfg / "providers.d" / f"{case.provider}.yaml"
            text = file.read_text().replace("send_to: [", f'send_to: ["{send_to(base)}", ', 1)
            file.write_text(text)
        gateway = run_gateway(cfg, tmp_path / "files", {**case.env(base, case.key), **(env or {})})
        gw = await gateway.__aenter__()
        stack.append(gateway)
        sdk = openai.AsyncOpenAI(base_url=gw.v1, api_key="x", max_retries=0, timeout=30)
        stack.append(sdk)
        return sdk, app, base

    yield make
    for item in reversed(stack):
        if isinstance(item, openai.AsyncOpenAI):
            await item.close()
        else:
            await item.__aexit__(None, None, None)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_generate_url_and_b64(library: Any, case: Case, spec: dict[str, Any] | None) -> None:
    sdk, app, _ = await library(case, case.model)
    raw = await sdk.images.with_raw_response.generate(
        model="m", prompt="a lighthouse at dusk", size=case.size, response_format="url",
        extra_body=case.extra,
    )  # fmt: skip
    body = raw.http_response.json()
    check_shape(spec, "ImagesResponse", body)
    assert raw.headers["x-pixgate-provider"] == case.provider
    async with aiohttp.ClientSession() as http, http.get(body["data"][0]["url"]) as resp:
        assert resp.status == 200
        assert size_of(await resp.read()) == case.expect

    result = await sdk.images.generate(
        model="m", prompt="a lighthouse at dusk", size=case.size, response_format="b64_json",
        extra_body=case.extra,
    )  # fmt: skip
    assert size_of(base64.b64decode(result.data[0].b64_json or "")) == case.expect
    fake = case.state(app)
    assert fake.rejections == []
    assert all(case.key not in str(r.query) for r in fake.requests)


@pytest.mark.parametrize("case", EDIT_CASES, ids=lambda c: c.id)
async def test_edit(library: Any, case: Case) -> None:
    assert case.edit_model is not None
    sdk, app, _ = await library(case, case.edit_model)
    source = png(512, 384)
    result = await sdk.images.edit(
        model="m", prompt="make it night", image=("in.png", source, "image/png"),
        response_format="b64_json",
    )  # fmt: skip
    expect = case.edit_expect or (512, 384)
    assert size_of(base64.b64decode(result.data[0].b64_json or "")) == expect
    fake = case.state(app)
    assert fake.rejections == []
    assert any(_carries(r, source) for r in fake.requests), "the input never reached upstream"


def _carries(rec: RecordedRequest, data: bytes) -> bool:
    """The request holds `data`: as a file part, or base64 (raw or in a data URI) in JSON."""
    if any(part.data == data for part in rec.parts):
        return True
    return rec.json is not None and base64.b64encode(data).decode() in json.dumps(rec.json)


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [("server_error", 502, "upstream_error"), ("content_policy", 400, "content_policy_violation")],
)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_failures_become_openai_errors(
    library: Any, case: Case, kind: str, status: int, code: str, spec: dict[str, Any] | None
) -> None:
    sdk, app, _ = await library(case, case.model)
    case.state(app).fail_next(kind)
    with pytest.raises(openai.APIStatusError) as err:
        await sdk.images.generate(model="m", prompt="x", size=case.size, extra_body=case.extra)
    assert err.value.status_code == status
    assert err.value.code == code
    check_shape(spec, "ErrorResponse", err.value.response.json())
    assert case.key not in err.value.message


async def test_bfl_polls_the_returned_url_on_another_host(library: Any) -> None:
    """BFL's polling_url names a regional host; the poll goes there, with the x-key, because
    bfl.yaml lists BFL's hosts in auth.send_to (here the fake's `localhost` origin too)."""
    case = next(c for c in CASES if c.provider == "bfl")
    regional = dataclasses.replace(
        case, make_app=lambda key: fake_bfl.create_app(expected_key=key, polling_host="localhost")
    )
    sdk, app, _ = await library(
        regional,
        regional.model,
        lambda base: base.replace("127.0.0.1", "localhost"),
        {"PIXGATE_FETCH_ALLOW_LOOPBACK": "1"},  # the sample is on `localhost` too
    )
    result = await sdk.images.generate(model="m", prompt="a fox", response_format="b64_json")
    assert result.data[0].b64_json
    polls = fake_bfl.state(app).calls("poll")
    assert polls and all(p.headers.get("host", "").startswith("localhost:") for p in polls)
    assert all(p.headers.get("x-key") == case.key for p in polls)


async def test_midjourney_n_images_are_upscales_of_one_grid(library: Any) -> None:
    """n=3: one imagine, its grid polled, then U1, U2, U3 of that grid, in order."""
    case = next(c for c in CASES if c.provider == "midjourney")
    sdk, app, _ = await library(case, case.model)
    result = await sdk.images.generate(
        model="m", prompt="a lighthouse", n=3, size="1024x1024", response_format="b64_json"
    )
    fake = fake_mj.state(app)
    assert len(fake.calls("imagine")) == 1
    changes = [r.json for r in fake.calls("change")]
    assert sorted(c["index"] for c in changes) == [1, 2, 3]
    assert {c["taskId"] for c in changes} == {next(iter(fake.tasks))}  # all from the one grid
    upscales = {t.index: t for t in fake.tasks.values() if t.action == "UPSCALE"}
    expected = [fake.files[f"{upscales[i].id}.png"].data for i in (1, 2, 3)]
    got = [base64.b64decode(d.b64_json or "") for d in result.data]
    assert [size_of(g) for g in got] == [(1024, 1024)] * 3
    assert got == expected  # in upscale order, whatever order they finished in


async def test_midjourney_blend(library: Any) -> None:
    case = next(c for c in CASES if c.provider == "midjourney")
    sdk, app, _ = await library(case, case.model)
    v1 = str(sdk.base_url).rstrip("/")
    images = [
        "data:image/png;base64," + base64.b64encode(png(64, 64)).decode(),
        "data:image/png;base64," + base64.b64encode(png(48, 48)).decode(),
    ]
    body = {"model": "m", "prompt": "mix them", "images": images, "size": "1536x1024",
            "response_format": "b64_json"}  # fmt: skip
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{v1}/images/blend", json=body) as resp:
            assert resp.status == 200, await resp.text()
            data = (await resp.json())["data"]
    sent = fake_mj.state(app).calls("blend")[0].json
    assert sent["dimensions"] == "LANDSCAPE" and len(sent["base64Array"]) == 2
    assert size_of(base64.b64decode(data[0]["b64_json"])) == (1344, 896)


@pytest.mark.parametrize(("finishes", "polls"), [(True, 0), (False, 3)])
async def test_replicate_polls_only_when_the_wait_did_not_finish(
    library: Any, finishes: bool, polls: int
) -> None:
    case = next(c for c in CASES if c.provider == "replicate")
    waiting = dataclasses.replace(
        case,
        make_app=lambda key: fake_replicate.create_app(
            expected_key=key, pending_polls=2, finishes_in_wait=finishes
        ),
    )
    sdk, app, _ = await library(waiting, waiting.model)
    result = await sdk.images.generate(model="m", prompt="a fox", response_format="b64_json")
    assert result.data[0].b64_json
    fake = fake_replicate.state(app)
    assert fake.calls("create")[0].headers["prefer"] == "wait"
    assert len(fake.calls("get")) == polls  # processing, processing, succeeded
