"""Executor checkpoints (calls/checkpoint.py): a durable job's call is journaled step by step,
resumes at its last polling step with the values earlier steps extracted (never sending the
submit again), keeps no key, and a client's cancel sends the task's `cancel` request."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from aiohttp import web

from engine.dsl.provider import compile_provider
from engine.dsl.spec import ProviderSpec
from engine.runtime.calls.checkpoint import (
    Journal,
    NotResumable,
    check_resumable,
    resume_point,
    resumed_hooks,
)
from engine.runtime.calls.executor import Executor
from engine.runtime.calls.wire import WireClient
from tests.upstreams import serve_upstream

KEY = "sk-checkpoint-0123456789abcdef"
SEEN = web.AppKey("seen", Counter[str])
DONE = web.AppKey("done", asyncio.Event)
POLLED = web.AppKey("polled", asyncio.Event)


async def polls(app: web.Application, count: int) -> None:
    """Return once the upstream has been polled `count` times."""
    async with asyncio.timeout(10):
        while sum(n for k, n in app[SEEN].items() if k.startswith("poll:")) < count:
            app[POLLED].clear()
            await app[POLLED].wait()


def provider(base_url: str, *, echo_key: bool = False) -> ProviderSpec:
    doc: dict[str, Any] = {
        "id": "cp",
        "base_url": base_url,
        "auth": {"header": "Authorization", "value": "Bearer {{ key }}", "keys": KEY},
        "models": {"m": None},
        "tasks": {
            "generate": {
                "steps": [
                    {
                        "name": "submit",
                        "request": {"path": "/submit"},
                        "extract": {"id": "echo" if echo_key else "id"},
                    },
                    {
                        "name": "poll",
                        "request": {"method": "GET", "path": "/tasks/{{ steps.submit.id }}"},
                        "until": "status == 'done'",
                        "every": "10ms",
                        "timeout": "10s",
                        "images": "urls",
                    },
                ],
                "cancel": {
                    "when": "steps.submit.id",
                    "request": {"path": "/tasks/{{ steps.submit.id }}/cancel"},
                },
            }
        },
    }
    reports: list[tuple[object, ...]] = []
    spec = compile_provider(doc, "cp.yaml", lambda *a: reports.append(a))
    assert spec is not None, reports
    return spec


def upstream() -> web.Application:
    app = web.Application()
    app[SEEN] = Counter()
    app[DONE] = asyncio.Event()
    app[POLLED] = asyncio.Event()

    async def submit(request: web.Request) -> web.Response:
        request.app[SEEN]["submit"] += 1
        key = request.headers["Authorization"].removeprefix("Bearer ")
        return web.json_response({"id": "t1", "echo": f"t1-{key}"})

    async def task(request: web.Request) -> web.Response:
        request.app[SEEN]["poll:" + request.match_info["id"]] += 1
        request.app[POLLED].set()
        if request.app[DONE].is_set():
            return web.json_response({"status": "done", "urls": ["https://img.test/a.png"]})
        return web.json_response({"status": "running"})

    async def cancel(request: web.Request) -> web.Response:
        request.app[SEEN]["cancel:" + request.match_info["id"]] += 1
        return web.json_response({"status": "canceled"})

    app.router.add_post("/submit", submit)
    app.router.add_get("/tasks/{id}", task)
    app.router.add_post("/tasks/{id}/cancel", cancel)
    return app


async def test_a_call_is_journaled_and_resumes_at_its_poll_without_a_second_submit() -> None:
    app = upstream()
    saved: list[dict[str, Any]] = []

    async def save(data: dict[str, Any]) -> None:
        for call in data["calls"].values():
            saved.append({"step": call["step"], "steps": call["steps"]})

    async with serve_upstream(app) as base, WireClient(16, 16) as session:
        spec = provider(base)
        task = spec.tasks["generate"]
        journal = Journal(save)
        await journal.attempt("r", "cp", "m", "generate", "kid-0", False)
        run = Executor(session, spec, base, KEY).run(task, {}, journal.hooks(0, 1, 7, KEY))
        running = asyncio.create_task(run)
        await polls(app, 3)
        running.cancel()  # the replica "dies" mid-poll
        with pytest.raises(asyncio.CancelledError):
            await running
        checkpoint = journal.data
        assert saved[-1] == {"step": 1, "steps": {"submit": {"id": "t1"}}}
        assert checkpoint["calls"]["0"]["polls"] >= 3
        assert checkpoint["attempt"]["key_id"] == "kid-0"
        assert KEY not in str(checkpoint)
        assert app[SEEN]["cancel:t1"] == 0  # not the client's cancel: the upstream is not told

        # Another replica: the same call from the checkpoint.
        other = Journal(save, resume_from=checkpoint)
        hooks = resumed_hooks(other, task, 0, 1, KEY)
        assert (hooks.start, hooks.done) == (1, {"submit": {"id": "t1"}})
        app[DONE].set()
        result = await Executor(session, spec, base, KEY).run(task, {}, hooks)
    assert [ref.value for ref in result.images] == ["https://img.test/a.png"]
    assert app[SEEN]["submit"] == 1


async def test_a_client_cancel_sends_the_cancel_step_once() -> None:
    app = upstream()
    async with serve_upstream(app) as base, WireClient(16, 16) as session:
        spec = provider(base)
        journal = Journal(lambda data: asyncio.sleep(0))
        await journal.attempt("r", "cp", "m", "generate", "kid-0", False)
        executor = Executor(session, spec, base, KEY, cancelling=lambda: journal.client_cancelled)
        running = asyncio.create_task(
            executor.run(spec.tasks["generate"], {}, journal.hooks(0, 1, 7, KEY))
        )
        await polls(app, 1)
        journal.client_cancelled = True
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    assert app[SEEN]["cancel:t1"] == 1


async def test_values_holding_the_key_are_not_kept_and_cannot_resume() -> None:
    app = upstream()
    async with serve_upstream(app) as base, WireClient(16, 16) as session:
        spec = provider(base, echo_key=True)  # a (hostile) upstream echoes the key back
        task = spec.tasks["generate"]
        journal = Journal(lambda data: asyncio.sleep(0))
        await journal.attempt("r", "cp", "m", "generate", "kid-0", False)
        running = asyncio.create_task(
            Executor(session, spec, base, KEY).run(task, {}, journal.hooks(0, 1, 7, KEY))
        )
        await polls(app, 1)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    assert KEY not in str(journal.data)
    with pytest.raises(NotResumable):
        check_resumable(task, journal.data)


def test_resume_point_is_the_last_polling_step_at_or_before_the_call() -> None:
    task = provider("https://api.test").tasks["generate"]
    assert resume_point(task, {"step": 1, "steps": {"submit": {"id": "x"}}}) == 1
    with pytest.raises(NotResumable, match="submit"):
        resume_point(task, {"step": 0, "steps": {}})  # inside the submit: it may have been sent
