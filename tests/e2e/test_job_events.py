"""GET /v1/images/jobs/{id}/events sends what an image stream sends: read with the official
SDK's own stream reader (as it reads `images.generate(stream=True)`), every event's JSON
checked against OpenAI's ImageGenStreamEvent schema (ImageEditStreamEvent for edits,
variations and blends), and the raw frames with aiohttp."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types import ImageGenStreamEvent

from engine.api.jobevents import completed_events
from tests.e2e.jobs_upstream import PNG, Env, jobs_env
from tests.openapi import validate_component

ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
async def env(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    async with jobs_env(tmp_path, getattr(request, "param", {})) as found:
        yield found


async def _job(env: Env, **body: Any) -> dict[str, Any]:
    raw = await env.a.images.with_raw_response.generate(
        model="slow", prompt="a fox", extra_headers=ASYNC, extra_body=body or None
    )
    job: dict[str, Any] = raw.http_response.json()
    return job


async def _frames(env: Env, job_id: str) -> list[tuple[str, str]]:
    """(event, data) of every frame, and `:` comments as ("", comment), until the end."""
    frames: list[tuple[str, str]] = []
    async with env.http.get(env.gw.v1 + f"/images/jobs/{job_id}/events") as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        event = ""
        async for line in resp.content:
            text = line.decode().rstrip("\r\n")
            if text.startswith("event: "):
                event = text[7:]
            elif text.startswith("data: "):
                frames.append((event, text[6:]))
                if json.loads(text[6:]).get("progress") == 40:
                    env.up.done.set()  # the upstream reported its progress: finish now
            elif text.startswith(": ") and text != ": keep-alive":
                frames.append(("", text))
    return frames


async def test_url_job_streams_progress_then_completed_events(
    env: Env, openai_spec: dict[str, Any]
) -> None:
    job = await _job(env)
    stream = await env.a.get(
        f"/images/jobs/{job['id']}/events",
        cast_to=ImageGenStreamEvent,
        stream=True,
        stream_cls=openai.AsyncStream[ImageGenStreamEvent],
    )
    seen: list[Any] = []
    async for event in stream:  # the SDK's reader, as for images.generate(stream=True)
        seen.append(event)
        if event.type == "image.job.progress" and getattr(event, "progress", None) == 40:
            env.up.done.set()
    kinds = [e.type for e in seen]
    assert kinds[0] == "image.job.progress" and kinds[-1] == "image_generation.completed"
    assert kinds.count("image_generation.completed") == 1
    progress = [e for e in seen if e.type == "image.job.progress"]
    assert progress[0].id == job["id"] and any(e.progress == 40 for e in progress)
    completed = seen[-1].model_dump(exclude_unset=True)  # as sent
    validate_component(openai_spec, "ImageGenStreamEvent", completed)
    assert completed["b64_json"] == "" and completed["url"] == "https://img.test/a.png"
    assert completed["usage"]["total_tokens"] == 0


@pytest.mark.parametrize("env", [{"PIXGATE_FETCH_ALLOW_LOOPBACK": "1"}], indirect=True)
async def test_b64_job_ends_as_the_image_stream_does(env: Env, openai_spec: dict[str, Any]) -> None:
    env.up.image_url = env.base + "/a.png"
    job = await _job(env, response_format="b64_json", quality="high")
    frames = await _frames(env, job["id"])
    events = [(name, json.loads(data)) for name, data in frames if name]
    for name, data in events:
        assert data["type"] == name  # as in OpenAI's streams: the event names its type
    assert [n for n, _ in events if n != "image.job.progress"] == ["image_generation.completed"]
    completed = events[-1][1]
    validate_component(openai_spec, "ImageGenStreamEvent", completed)
    assert base64.b64decode(completed["b64_json"]) == PNG and "url" not in completed
    assert completed["output_format"] == "png" and completed["quality"] == "high"
    assert completed["pixgate_size"] == "8x8"
    assert all("[DONE]" not in data for _, data in frames)  # image streams send none


async def test_failed_job_ends_with_the_stream_error_event(env: Env) -> None:
    job = await _job(env)
    env.up.failed = True
    stream = await env.a.get(
        f"/images/jobs/{job['id']}/events",
        cast_to=ImageGenStreamEvent,
        stream=True,
        stream_cls=openai.AsyncStream[ImageGenStreamEvent],
    )
    with pytest.raises(openai.APIError) as raised:
        async for _ in stream:
            pass
    async with env.http.get(env.gw.v1 + f"/images/jobs/{job['id']}") as resp:
        failed = await resp.json()
    assert failed["status"] == "failed" and raised.value.body == failed["error"]
    frames = await _frames(env, job["id"])  # a finished job: just its end
    assert [name for name, _ in frames] == ["error"]
    assert set(json.loads(frames[0][1])["error"]) == {"message", "type", "param", "code"}


async def test_cancelled_job_ends_with_image_job_cancelled(env: Env) -> None:
    job = await _job(env)
    async with env.http.delete(env.gw.v1 + f"/images/jobs/{job['id']}") as resp:
        assert (await resp.json())["status"] == "cancelled"
    frames = await _frames(env, job["id"])
    assert [name for name, _ in frames] == ["image.job.cancelled"]
    data = json.loads(frames[0][1])
    assert data["type"] == "image.job.cancelled" and data["id"] == job["id"]
    url = env.gw.v1 + f"/images/jobs/{job['id']}/events"
    async with env.http.get(url, headers={"Authorization": "Bearer key-b"}) as other:
        assert other.status == 404  # another client's key


@pytest.mark.parametrize("task", ["edit", "variation", "blend"])
async def test_edit_variation_and_blend_jobs_end_with_image_edit_completed(
    task: str, openai_spec: dict[str, Any]
) -> None:
    usage = {
        "total_tokens": 9, "input_tokens": 4, "output_tokens": 5,
        "input_tokens_details": {"text_tokens": 3, "image_tokens": 1},
    }  # fmt: skip
    b64 = base64.b64encode(PNG).decode()
    record = {
        "status": "succeeded",
        "request": {"job": {"task": task, "prompt": "x", "background": "opaque"}},
        "result": {"created": 1, "data": [{"b64_json": b64}, {"b64_json": b64}], "usage": usage},
    }
    events = await completed_events(record)
    assert [e["type"] for e in events] == ["image_edit.completed"] * 2
    for event in events:
        validate_component(openai_spec, "ImageEditStreamEvent", event)
    assert events[0]["usage"] == usage and events[1]["usage"]["total_tokens"] == 0  # once
    assert events[0]["background"] == "opaque" and events[0]["pixgate_size"] == "8x8"
