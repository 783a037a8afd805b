"""Built-in offline demo upstream: a tiny OpenAI-style image API served by the gateway itself.

The gateway mounts it with ``app.add_subapp("/_demo", create_demo_app())`` and talks to it over
HTTP through an ordinary provider YAML file, exactly as it would talk to a real provider. All
paths below are relative to the mount point:

* ``POST /v1/images/generations``  JSON, OpenAI-compatible (b64_json or url responses)
* ``POST /v1/images/edits``        multipart (``image`` / ``image[]`` parts, ``mask``) or JSON
  with ``images`` as data URIs / base64 strings
* ``POST /v1/tasks`` + ``GET /v1/tasks/{task_id}``  an asynchronous submit-and-poll flow
* ``GET /files/{name}``            images handed out as URLs (in-memory LRU)
* ``GET /``                        a short JSON description

Absolute URLs are built from the request (``request.url.origin()``, i.e. scheme + Host header)
plus the route's path, which aiohttp prefixes with the mount point, so a URL handed to a client
is fetchable through the same address the client used.

This module holds the endpoints and the app; requests are parsed in ``forms``, tasks run in
``tasks``, images handed out as URLs live in ``files``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from engine.demo.errors import ApiError, error_response, json_response
from engine.demo.files import FileStore
from engine.demo.formats import FORMATS
from engine.demo.forms import (
    MAX_DELAY,
    MAX_INPUT_IMAGES,
    MAX_N,
    MAX_PROMPT_CHARS,
    MAX_SIDE,
    MIN_SIDE,
    RenderJob,
    build_job,
    decode_image_list,
    decode_image_string,
    parse_prompt,
    parse_response_format,
    probe_inputs,
    read_json_object,
    read_multipart,
)
from engine.demo.tasks import FAIL_MARKER, Task, TaskStore, run_task, task_progress

__all__ = ["create_demo_app"]

log = logging.getLogger(__name__)

_FILE_ROUTE: Final = "pixgate-demo-file"
_CATCH_ALL_ROUTE: Final = "pixgate-demo-catchall"

FILES_KEY: Final = web.AppKey("pixgate_demo_files", FileStore)
TASKS_KEY: Final = web.AppKey("pixgate_demo_tasks", TaskStore)


Guard = Callable[[web.Request], web.StreamResponse | None]  # an answer instead, or None


def _answering(handler: Handler, guard: Guard | None) -> Handler:
    """`handler` behind `guard`, with its errors as the demo's JSON errors. (Each route's
    own wrapper rather than a middleware: an app with none, nor a sub-app with any, runs
    its handlers without aiohttp's middleware chain, the gateway's requests too.)"""

    async def answer(request: web.Request) -> web.StreamResponse:
        refused = guard(request) if guard is not None else None
        if refused is not None:
            return refused
        return await _errors_shaped(request, handler)

    return answer


async def _errors_shaped(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.message, status=exc.status, param=exc.param, type_=exc.type)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.reason, status=exc.status)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("demo upstream: unexpected error in %s %s", request.method, request.path)
        return error_response(
            "internal error in the demo upstream", status=500, type_="server_error"
        )


def _file_url(request: web.Request, name: str) -> str:
    path = request.app.router[_FILE_ROUTE].url_for(name=name)
    return str(request.url.origin().join(path))


# --------------------------------------------------------------------------------------------
# image endpoints


async def _render(job: RenderJob) -> list[bytes]:
    try:
        return await asyncio.to_thread(job.render_all)
    except ValueError as exc:
        raise ApiError(str(exc), param="image" if job.inputs else None) from None


def _images_response(
    request: web.Request, job: RenderJob, images: list[bytes], response_format: str
) -> web.Response:
    data: list[dict[str, str]]
    if response_format == "url":
        store = request.app[FILES_KEY]
        data = [{"url": _file_url(request, store.put(img, job.fmt))} for img in images]
    else:
        data = [{"b64_json": base64.b64encode(img).decode("ascii")} for img in images]
    return json_response(
        {
            "created": int(time.time()),
            "data": data,
            "output_format": job.fmt,
            "size": f"{job.width}x{job.height}",
            "usage": {"generated_images": len(images)},
        }
    )


async def generations(request: web.Request) -> web.Response:
    payload = await read_json_object(request)
    job = build_job(payload, [], None)
    response_format = parse_response_format(payload)
    images = await _render(job)
    return _images_response(request, job, images, response_format)


async def edits(request: web.Request) -> web.Response:
    payload: Mapping[str, Any]
    if request.content_type.startswith("multipart/"):
        fields, inputs, mask = await read_multipart(request)
        if len(inputs) > MAX_INPUT_IMAGES:
            raise ApiError(f"at most {MAX_INPUT_IMAGES} input images are allowed", param="image")
        payload = fields
    else:
        json_payload = await read_json_object(request, " (or multipart/form-data)")
        inputs = decode_image_list(json_payload)
        mask_raw = json_payload.get("mask")
        mask = None if mask_raw is None else decode_image_string(mask_raw, "mask", 0)
        payload = json_payload
    # Validate the cheap fields first, so a missing prompt is reported as such.
    parse_prompt(payload.get("prompt"))
    if not inputs:
        raise ApiError("at least one input image is required ('image')", param="image")
    input_size = await probe_inputs(inputs, "image")
    if mask is not None:
        await probe_inputs([mask], "mask")
    job = build_job(payload, inputs, input_size)
    response_format = parse_response_format(payload)
    images = await _render(job)
    return _images_response(request, job, images, response_format)


# --------------------------------------------------------------------------------------------
# async task endpoints


async def create_task(request: web.Request) -> web.Response:
    payload = await read_json_object(request)
    parse_prompt(payload.get("prompt"))
    delay_raw = payload.get("delay", 1.0)
    if (
        isinstance(delay_raw, bool)
        or not isinstance(delay_raw, int | float)
        or not math.isfinite(delay_raw)
        or not 0 <= delay_raw <= MAX_DELAY
    ):
        raise ApiError(
            f"'delay' must be a number of seconds between 0 and {MAX_DELAY:g}", param="delay"
        )
    inputs = decode_image_list(payload)
    input_size = await probe_inputs(inputs, "images")
    job = build_job(payload, inputs, input_size)
    if payload.get("response_format") is not None:
        parse_response_format(payload)  # accepted for symmetry; tasks always return URLs

    loop = asyncio.get_running_loop()
    task = Task(
        task_id=f"task_{secrets.token_hex(12)}",
        job=job,
        delay=float(delay_raw),
        created=loop.time(),
        created_unix=int(time.time()),
    )
    request.app[TASKS_KEY].add(task)
    task.runner = loop.create_task(
        run_task(task, request.app[FILES_KEY]), name=f"pixgate-demo-{task.task_id}"
    )
    return json_response({"task_id": task.task_id, "status": task.status})


async def get_task(request: web.Request) -> web.Response:
    task_id = request.match_info["task_id"]
    task = request.app[TASKS_KEY].get(task_id)
    if task is None:
        raise ApiError(f"no such task: {task_id!r}", param="task_id", status=404)
    body: dict[str, Any] = {
        "task_id": task.task_id,
        "status": task.status,
        "progress": task_progress(task, asyncio.get_running_loop().time()),
        "created": task.created_unix,
    }
    if task.status == "succeeded":
        body["images"] = [_file_url(request, name) for name in task.files]
    elif task.status == "failed":
        body["error"] = {"message": task.error or "demo task failed"}
    return json_response(body)


# --------------------------------------------------------------------------------------------
# files and index


async def get_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    stored = request.app[FILES_KEY].get(name)
    if stored is None:
        raise ApiError(f"no such file: {name!r}", param="name", status=404)
    return web.Response(
        body=stored.data,
        content_type=stored.content_type,
        headers={"Cache-Control": "private, max-age=3600, immutable"},
    )


async def index(request: web.Request) -> web.Response:
    base = str(request.url.origin().join(request.app.router["pixgate-demo-index"].url_for()))
    return json_response(
        {
            "object": "pixgate.demo_upstream",
            "description": "Offline demo image API built into pixgate (no keys, no internet).",
            "base_url": base.rstrip("/"),
            "endpoints": {
                "generations": "POST v1/images/generations",
                "edits": "POST v1/images/edits",
                "create_task": "POST v1/tasks",
                "get_task": "GET v1/tasks/{task_id}",
                "files": "GET files/{name}",
            },
            "limits": {
                "n": [1, MAX_N],
                "size": [MIN_SIDE, MAX_SIDE],
                "prompt_chars": MAX_PROMPT_CHARS,
                "delay_seconds": [0, MAX_DELAY],
                "output_format": list(FORMATS),
            },
            "fail_marker": FAIL_MARKER,
        }
    )


async def not_found(request: web.Request) -> web.Response:
    """Catch-all under the mount point: JSON 404 (or 405 when only the method is wrong)."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.name == _CATCH_ALL_ROUTE:
            continue
        _, methods = await resource.resolve(request)
        allowed |= methods
    if allowed:
        resp = error_response(
            f"method {request.method} is not allowed for {request.path}", status=405
        )
        resp.headers["Allow"] = ", ".join(sorted(allowed))
        return resp
    return error_response(f"unknown demo endpoint: {request.method} {request.path}", status=404)


# --------------------------------------------------------------------------------------------
# app factory


def create_demo_app(
    *,
    max_files: int = 256,
    max_tasks: int = 1000,
    max_file_bytes: int = 256 * 1024 * 1024,
    guard: Guard | None = None,
) -> web.Application:
    """Build the demo upstream sub-application (mount it with ``add_subapp("/_demo", ...)``).

    ``max_files`` / ``max_file_bytes`` bound the in-memory LRU of images served under
    ``/files/``; ``max_tasks`` bounds the async-task table (oldest finished tasks are evicted
    first; when every slot holds an unfinished task, new submissions get 429). ``guard``
    sees every request first and may answer it instead.
    """
    app = web.Application()
    app[FILES_KEY] = FileStore(max_files, max_file_bytes)
    app[TASKS_KEY] = TaskStore(max_tasks)

    async def _cancel_tasks(app: web.Application) -> None:
        with contextlib.suppress(Exception):
            await app[TASKS_KEY].cancel_all()

    app.on_cleanup.append(_cancel_tasks)
    router = app.router
    router.add_get("/", _answering(index, guard), name="pixgate-demo-index")
    router.add_post("/v1/images/generations", _answering(generations, guard))
    router.add_post("/v1/images/edits", _answering(edits, guard))
    router.add_post("/v1/tasks", _answering(create_task, guard))
    router.add_get("/v1/tasks/{task_id}", _answering(get_task, guard))
    router.add_get("/files/{name}", _answering(get_file, guard), name=_FILE_ROUTE)
    router.add_route("*", "/{tail:.*}", _answering(not_found, guard), name=_CATCH_ALL_ROUTE)
    return app
