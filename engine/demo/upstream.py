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
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson
from aiohttp import BodyPartReader, web
from aiohttp.typedefs import Handler

from engine.demo.render import FORMATS, image_size, normalize_format, render_image

__all__ = ["create_demo_app"]

log = logging.getLogger(__name__)

MAX_PROMPT_CHARS: Final = 4000
MIN_SIDE: Final = 64
MAX_SIDE: Final = 2048
MAX_N: Final = 4
MAX_DELAY: Final = 30.0
MAX_INPUT_IMAGES: Final = 16
MAX_BODY_BYTES: Final = 64 * 1024 * 1024
"""Request bodies are read by the demo itself (not ``request.read()``), so the parent app's
``client_max_size`` does not apply; this is the demo's own limit."""

_FILE_ROUTE: Final = "pixgate-demo-file"
_CATCH_ALL_ROUTE: Final = "pixgate-demo-catchall"
_SIZE_RE: Final = re.compile(r"^\s*(\d{1,6})\s*[xX×]\s*(\d{1,6})\s*$")
_FAIL_MARKER: Final = "[demo:fail]"
_QUEUED_FRACTION: Final = 0.2

TaskStatus = Literal["queued", "running", "succeeded", "failed"]


# --------------------------------------------------------------------------------------------
# errors


class _ApiError(Exception):
    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        status: int = 400,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
        self.type = type_


def _json(payload: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def _error_response(
    message: str, *, status: int, param: str | None = None, type_: str = "invalid_request_error"
) -> web.Response:
    return _json(
        {"error": {"message": message, "type": type_, "param": param, "code": None}},
        status=status,
    )


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except _ApiError as exc:
        return _error_response(exc.message, status=exc.status, param=exc.param, type_=exc.type)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error_response(exc.reason, status=exc.status)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("demo upstream: unexpected error in %s %s", request.method, request.path)
        return _error_response(
            "internal error in the demo upstream", status=500, type_="server_error"
        )


# --------------------------------------------------------------------------------------------
# state


@dataclass(slots=True)
class _StoredFile:
    data: bytes
    content_type: str


class _FileStore:
    """In-memory LRU of rendered images, bounded by count and total bytes."""

    def __init__(self, max_files: int, max_bytes: int) -> None:
        self.max_files = max(1, max_files)
        self.max_bytes = max(1, max_bytes)
        self._files: OrderedDict[str, _StoredFile] = OrderedDict()
        self._bytes = 0

    def put(self, data: bytes, fmt: str) -> str:
        """Store ``data``; return its file name (content-addressed, so duplicates share one)."""
        name = f"{hashlib.sha256(data).hexdigest()[:32]}.{fmt}"
        if name in self._files:
            self._files.move_to_end(name)
            return name
        self._files[name] = _StoredFile(data, FORMATS[fmt])
        self._bytes += len(data)
        while len(self._files) > 1 and (
            len(self._files) > self.max_files or self._bytes > self.max_bytes
        ):
            _, old = self._files.popitem(last=False)
            self._bytes -= len(old.data)
        return name

    def get(self, name: str) -> _StoredFile | None:
        stored = self._files.get(name)
        if stored is not None:
            self._files.move_to_end(name)
        return stored

    def __len__(self) -> int:
        return len(self._files)


@dataclass(slots=True)
class _Job:
    """Everything needed to render a batch of images."""

    prompt: str
    width: int
    height: int
    n: int
    seed: int | None
    fmt: str
    inputs: list[bytes] = field(default_factory=list)

    def render_all(self) -> list[bytes]:
        base = self.seed if self.seed is not None else 0
        return [
            render_image(
                self.prompt,
                self.width,
                self.height,
                # n > 1 must give distinct images: each one gets its own seed.
                seed=self.seed if self.n == 1 else base + i,
                inputs=self.inputs,
                fmt=self.fmt,
            )
            for i in range(self.n)
        ]


@dataclass(slots=True)
class _Task:
    task_id: str
    job: _Job
    delay: float
    created: float  # loop.time()
    created_unix: int
    status: TaskStatus = "queued"
    progress: int = 0
    files: list[str] = field(default_factory=list)
    error: str | None = None
    runner: asyncio.Task[None] | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")


class _TaskStore:
    def __init__(self, max_tasks: int) -> None:
        self.max_tasks = max(1, max_tasks)
        self.tasks: dict[str, _Task] = {}  # insertion order = creation order

    def add(self, task: _Task) -> None:
        while len(self.tasks) >= self.max_tasks:
            oldest = next((t for t in self.tasks.values() if t.finished), None)
            if oldest is None:
                raise _ApiError(
                    f"too many unfinished demo tasks (limit {self.max_tasks}); retry later",
                    status=429,
                    type_="rate_limit_error",
                )
            del self.tasks[oldest.task_id]
        self.tasks[task.task_id] = task

    def get(self, task_id: str) -> _Task | None:
        return self.tasks.get(task_id)

    async def cancel_all(self) -> None:
        runners = [t.runner for t in self.tasks.values() if t.runner and not t.runner.done()]
        for runner in runners:
            runner.cancel()
        if runners:
            await asyncio.gather(*runners, return_exceptions=True)


FILES_KEY: Final = web.AppKey("pixgate_demo_files", _FileStore)
TASKS_KEY: Final = web.AppKey("pixgate_demo_tasks", _TaskStore)


# --------------------------------------------------------------------------------------------
# request parsing and validation


async def _read_limited_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise _ApiError(f"request body too large (limit {MAX_BODY_BYTES} bytes)", status=413)
    buf = bytearray()
    async for chunk in request.content.iter_chunked(256 * 1024):
        buf += chunk
        if len(buf) > MAX_BODY_BYTES:
            raise _ApiError(f"request body too large (limit {MAX_BODY_BYTES} bytes)", status=413)
    return bytes(buf)


async def _read_json_object(request: web.Request, hint: str = "") -> dict[str, Any]:
    body = await _read_limited_body(request)
    if not body.strip():
        raise _ApiError(f"request body must be a JSON object{hint}")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _ApiError(f"request body must be a JSON object{hint}; JSON error: {exc}") from None
    if not isinstance(payload, dict):
        raise _ApiError(f"request body must be a JSON object{hint}")
    return payload


async def _read_part(part: BodyPartReader, budget: list[int]) -> bytes:
    buf = bytearray()
    while chunk := await part.read_chunk(256 * 1024):
        buf += chunk
        budget[0] -= len(chunk)
        if budget[0] < 0:
            raise _ApiError(f"request body too large (limit {MAX_BODY_BYTES} bytes)", status=413)
    return bytes(buf)


async def _read_multipart(
    request: web.Request,
) -> tuple[dict[str, str], list[bytes], bytes | None]:
    """Return (text fields, image parts, mask part) of a multipart/form-data request."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise _ApiError(f"request body too large (limit {MAX_BODY_BYTES} bytes)", status=413)
    fields: dict[str, str] = {}
    images: list[bytes] = []
    mask: bytes | None = None
    budget = [MAX_BODY_BYTES]
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise _ApiError("nested multipart bodies are not supported")
            name = part.name or ""
            data = await _read_part(part, budget)
            if name in ("image", "image[]"):
                images.append(data)
            elif name in ("mask", "mask[]"):
                mask = data
            elif name:
                charset = part.get_charset("utf-8")
                try:
                    fields[name] = data.decode(charset)
                except (LookupError, UnicodeDecodeError):
                    raise _ApiError(f"form field {name!r} is not valid text", param=name) from None
    except _ApiError:
        raise
    except (ValueError, AssertionError, RuntimeError) as exc:
        raise _ApiError(f"malformed multipart body: {exc}") from None
    return fields, images, mask


def _parse_int(value: object, param: str, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise _ApiError(f"'{param}' must be an integer", param=param)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d{1,20}\s*", value):
        value = int(value)
    if not isinstance(value, int):
        raise _ApiError(f"'{param}' must be an integer", param=param)
    if not lo <= value <= hi:
        raise _ApiError(f"'{param}' must be between {lo} and {hi}, got {value}", param=param)
    return value


def _parse_prompt(value: object) -> str:
    if value is None:
        raise _ApiError("'prompt' is required", param="prompt")
    if not isinstance(value, str):
        raise _ApiError("'prompt' must be a string", param="prompt")
    if not value.strip():
        raise _ApiError("'prompt' must not be empty", param="prompt")
    if len(value) > MAX_PROMPT_CHARS:
        raise _ApiError(
            f"'prompt' is too long ({len(value)} characters; at most {MAX_PROMPT_CHARS})",
            param="prompt",
        )
    return value


def _parse_size(value: object) -> tuple[int, int] | None:
    """Return (width, height), or None for "auto"/absent (caller picks the default)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    match = _SIZE_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise _ApiError(
            f"'size' must look like '1024x1024' (WIDTHxHEIGHT), got {value!r}", param="size"
        )
    width, height = int(match.group(1)), int(match.group(2))
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise _ApiError(
            f"'size' sides must each be between {MIN_SIDE} and {MAX_SIDE} pixels, "
            f"got {width}x{height}",
            param="size",
        )
    return width, height


def _parse_choice(value: object, param: str, choices: Sequence[str], default: str) -> str:
    if value is None:
        return default
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    raise _ApiError(
        f"'{param}' must be one of {', '.join(repr(c) for c in choices)}, got {value!r}",
        param=param,
    )


def _parse_format(value: object) -> str:
    if value is None:
        return "png"
    if isinstance(value, str):
        try:
            return normalize_format(value)
        except ValueError:
            pass
    raise _ApiError(
        f"'output_format' must be one of 'png', 'jpeg', 'webp', got {value!r}",
        param="output_format",
    )


def _decode_image_string(value: object, param: str, index: int) -> bytes:
    if not isinstance(value, str):
        raise _ApiError(f"'{param}[{index}]' must be a data URI or base64 string", param=param)
    text = value.strip()
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or not header.endswith(";base64"):
            raise _ApiError(
                f"'{param}[{index}]' must be a base64 data URI (data:image/...;base64,...)",
                param=param,
            )
    text = "".join(text.split())
    text += "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            data = base64.urlsafe_b64decode(text)
        else:
            data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _ApiError(f"'{param}[{index}]' is not valid base64", param=param) from None
    if not data:
        raise _ApiError(f"'{param}[{index}]' is empty", param=param)
    return data


def _decode_image_list(payload: Mapping[str, Any]) -> list[bytes]:
    """Images of a JSON request: ``images`` (list) or ``image`` (string or list)."""
    for param in ("images", "image"):
        value = payload.get(param)
        if value is None:
            continue
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise _ApiError(f"'{param}' must be a list of data URIs or base64 strings", param=param)
        if len(items) > MAX_INPUT_IMAGES:
            raise _ApiError(f"at most {MAX_INPUT_IMAGES} input images are allowed", param=param)
        return [_decode_image_string(item, param, i) for i, item in enumerate(items)]
    return []


async def _probe_inputs(images: Sequence[bytes], param: str) -> tuple[int, int] | None:
    """Check that every input is a readable image; return the first one's size."""
    first: tuple[int, int] | None = None
    for i, data in enumerate(images):
        try:
            size = await asyncio.to_thread(image_size, data)
        except ValueError as exc:
            raise _ApiError(f"'{param}' #{i + 1}: {exc}", param=param) from None
        if first is None:
            first = size
    return first


def _size_from_input(size: tuple[int, int]) -> tuple[int, int]:
    """An input image's size, scaled down to fit MAX_SIDE and clamped to MIN_SIDE."""
    width, height = size
    scale = min(1.0, MAX_SIDE / max(width, height))
    width, height = round(width * scale), round(height * scale)
    return (
        min(MAX_SIDE, max(MIN_SIDE, width)),
        min(MAX_SIDE, max(MIN_SIDE, height)),
    )


def _build_job(
    payload: Mapping[str, Any],
    inputs: list[bytes],
    input_size: tuple[int, int] | None,
) -> _Job:
    prompt = _parse_prompt(payload.get("prompt"))
    n_raw = payload.get("n")
    n = 1 if n_raw is None else _parse_int(n_raw, "n", 1, MAX_N)
    size = _parse_size(payload.get("size"))
    if size is None:
        size = _size_from_input(input_size) if input_size else (1024, 1024)
    seed_raw = payload.get("seed")
    seed = None if seed_raw is None else _parse_int(seed_raw, "seed", -(2**63), 2**63 - 1)
    fmt = _parse_format(payload.get("output_format"))
    return _Job(prompt, size[0], size[1], n, seed, fmt, inputs)


def _parse_response_format(payload: Mapping[str, Any]) -> str:
    return _parse_choice(
        payload.get("response_format"), "response_format", ("b64_json", "url"), "b64_json"
    )


def _file_url(request: web.Request, name: str) -> str:
    path = request.app.router[_FILE_ROUTE].url_for(name=name)
    return str(request.url.origin().join(path))


# --------------------------------------------------------------------------------------------
# image endpoints


async def _render(job: _Job) -> list[bytes]:
    try:
        return await asyncio.to_thread(job.render_all)
    except ValueError as exc:
        raise _ApiError(str(exc), param="image" if job.inputs else None) from None


def _images_response(
    request: web.Request, job: _Job, images: list[bytes], response_format: str
) -> web.Response:
    data: list[dict[str, str]]
    if response_format == "url":
        store = request.app[FILES_KEY]
        data = [{"url": _file_url(request, store.put(img, job.fmt))} for img in images]
    else:
        data = [{"b64_json": base64.b64encode(img).decode("ascii")} for img in images]
    return _json(
        {
            "created": int(time.time()),
            "data": data,
            "output_format": job.fmt,
            "size": f"{job.width}x{job.height}",
            "usage": {"generated_images": len(images)},
        }
    )


async def generations(request: web.Request) -> web.Response:
    payload = await _read_json_object(request)
    job = _build_job(payload, [], None)
    response_format = _parse_response_format(payload)
    images = await _render(job)
    return _images_response(request, job, images, response_format)


async def edits(request: web.Request) -> web.Response:
    payload: Mapping[str, Any]
    if request.content_type.startswith("multipart/"):
        fields, inputs, mask = await _read_multipart(request)
        if len(inputs) > MAX_INPUT_IMAGES:
            raise _ApiError(f"at most {MAX_INPUT_IMAGES} input images are allowed", param="image")
        payload = fields
    else:
        json_payload = await _read_json_object(request, " (or multipart/form-data)")
        inputs = _decode_image_list(json_payload)
        mask_raw = json_payload.get("mask")
        mask = None if mask_raw is None else _decode_image_string(mask_raw, "mask", 0)
        payload = json_payload
    # Validate the cheap fields first, so a missing prompt is reported as such.
    _parse_prompt(payload.get("prompt"))
    if not inputs:
        raise _ApiError("at least one input image is required ('image')", param="image")
    input_size = await _probe_inputs(inputs, "image")
    if mask is not None:
        await _probe_inputs([mask], "mask")
    job = _build_job(payload, inputs, input_size)
    response_format = _parse_response_format(payload)
    images = await _render(job)
    return _images_response(request, job, images, response_format)


# --------------------------------------------------------------------------------------------
# async task endpoints


async def _run_task(task: _Task, files: _FileStore) -> None:
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(task.delay * _QUEUED_FRACTION)
        task.status = "running"
        task.progress = max(task.progress, int(_QUEUED_FRACTION * 100))
        if _FAIL_MARKER in task.job.prompt:
            images: list[bytes] = []
        else:
            images = await asyncio.to_thread(task.job.render_all)
        remaining = task.delay - (loop.time() - task.created)
        if remaining > 0:
            await asyncio.sleep(remaining)
        if _FAIL_MARKER in task.job.prompt:
            task.error = "demo task failed as requested"
            task.status = "failed"
            return
        task.files = [files.put(img, task.job.fmt) for img in images]
        task.progress = 100
        task.status = "succeeded"
    except asyncio.CancelledError:
        if not task.finished:
            task.status = "failed"
            task.error = "demo task was cancelled"
        raise
    except ValueError as exc:
        task.status = "failed"
        task.error = str(exc)
    except Exception as exc:
        log.exception("demo upstream: task %s crashed", task.task_id)
        task.status = "failed"
        task.error = f"demo task crashed: {type(exc).__name__}"


def _task_progress(task: _Task, now: float) -> int:
    if task.status == "running":
        if task.delay <= 0:
            return 99
        elapsed = (now - task.created) / task.delay
        task.progress = max(task.progress, min(99, int(elapsed * 100)))
    elif task.status == "succeeded":
        task.progress = 100
    return task.progress


async def create_task(request: web.Request) -> web.Response:
    payload = await _read_json_object(request)
    _parse_prompt(payload.get("prompt"))
    delay_raw = payload.get("delay", 1.0)
    if (
        isinstance(delay_raw, bool)
        or not isinstance(delay_raw, int | float)
        or not math.isfinite(delay_raw)
        or not 0 <= delay_raw <= MAX_DELAY
    ):
        raise _ApiError(
            f"'delay' must be a number of seconds between 0 and {MAX_DELAY:g}", param="delay"
        )
    inputs = _decode_image_list(payload)
    input_size = await _probe_inputs(inputs, "images")
    job = _build_job(payload, inputs, input_size)
    if payload.get("response_format") is not None:
        _parse_response_format(payload)  # accepted for symmetry; tasks always return URLs

    loop = asyncio.get_running_loop()
    task = _Task(
        task_id=f"task_{secrets.token_hex(12)}",
        job=job,
        delay=float(delay_raw),
        created=loop.time(),
        created_unix=int(time.time()),
    )
    request.app[TASKS_KEY].add(task)
    task.runner = loop.create_task(
        _run_task(task, request.app[FILES_KEY]), name=f"pixgate-demo-{task.task_id}"
    )
    return _json({"task_id": task.task_id, "status": task.status})


async def get_task(request: web.Request) -> web.Response:
    task_id = request.match_info["task_id"]
    task = request.app[TASKS_KEY].get(task_id)
    if task is None:
        raise _ApiError(f"no such task: {task_id!r}", param="task_id", status=404)
    body: dict[str, Any] = {
        "task_id": task.task_id,
        "status": task.status,
        "progress": _task_progress(task, asyncio.get_running_loop().time()),
        "created": task.created_unix,
    }
    if task.status == "succeeded":
        body["images"] = [_file_url(request, name) for name in task.files]
    elif task.status == "failed":
        body["error"] = {"message": task.error or "demo task failed"}
    return _json(body)


# --------------------------------------------------------------------------------------------
# files and index


async def get_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    stored = request.app[FILES_KEY].get(name)
    if stored is None:
        raise _ApiError(f"no such file: {name!r}", param="name", status=404)
    return web.Response(
        body=stored.data,
        content_type=stored.content_type,
        headers={"Cache-Control": "private, max-age=3600, immutable"},
    )


async def index(request: web.Request) -> web.Response:
    base = str(request.url.origin().join(request.app.router["pixgate-demo-index"].url_for()))
    return _json(
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
            "fail_marker": _FAIL_MARKER,
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
        resp = _error_response(
            f"method {request.method} is not allowed for {request.path}", status=405
        )
        resp.headers["Allow"] = ", ".join(sorted(allowed))
        return resp
    return _error_response(f"unknown demo endpoint: {request.method} {request.path}", status=404)


# --------------------------------------------------------------------------------------------
# app factory


def create_demo_app(
    *, max_files: int = 256, max_tasks: int = 1000, max_file_bytes: int = 256 * 1024 * 1024
) -> web.Application:
    """Build the demo upstream sub-application (mount it with ``add_subapp("/_demo", ...)``).

    ``max_files`` / ``max_file_bytes`` bound the in-memory LRU of images served under
    ``/files/``; ``max_tasks`` bounds the async-task table (oldest finished tasks are evicted
    first; when every slot holds an unfinished task, new submissions get 429).
    """
    app = web.Application(middlewares=[_error_middleware])
    app[FILES_KEY] = _FileStore(max_files, max_file_bytes)
    app[TASKS_KEY] = _TaskStore(max_tasks)

    async def _cancel_tasks(app: web.Application) -> None:
        with contextlib.suppress(Exception):
            await app[TASKS_KEY].cancel_all()

    app.on_cleanup.append(_cancel_tasks)
    app.router.add_get("/", index, name="pixgate-demo-index")
    app.router.add_post("/v1/images/generations", generations)
    app.router.add_post("/v1/images/edits", edits)
    app.router.add_post("/v1/tasks", create_task)
    app.router.add_get("/v1/tasks/{task_id}", get_task)
    app.router.add_get("/files/{name}", get_file, name=_FILE_ROUTE)
    app.router.add_route("*", "/{tail:.*}", not_found, name=_CATCH_ALL_ROUTE)
    return app
