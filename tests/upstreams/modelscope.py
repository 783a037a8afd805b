"""Fake ModelScope API-Inference async image generation (provider-apis.md §5).

Routes (gateway base URL ``{base}/v1``):

* ``POST /v1/images/generations`` (endpoint ``"submit"``): requires
  ``X-ModelScope-Async-Mode: true`` (else 400 ``{"errors":{...},"request_id":...}``). JSON
  ``model``, ``prompt`` (< 2000 chars), ``negative_prompt``, ``size`` ("WxH", 64..2048),
  ``seed`` (0..2^31-1), ``steps`` (1..100), ``guidance`` (1.5..20), ``image_url`` (str or list),
  ``loras`` (str or {id: weight}, <= 6, weights sum to 1). Any other field is rejected (400),
  as ModelScope does for unsupported parameters. Answers ``{"task_id","request_id"}``.
* ``GET /v1/tasks/{task_id}`` (endpoint ``"poll"``): requires
  ``X-ModelScope-Task-Type: image_generation``; without it (or for an unknown id) answers
  HTTP 200 ``{"errors":{"code":500,"message":"task not found"},"task_status":"FAILED",...}``.
  The first ``pending_polls`` polls answer ``PENDING`` (1st) then ``RUNNING``; the next one
  answers ``SUCCEED`` with ``output_images: [<url on this fake>]``.
* ``GET /files/{name}`` (endpoint ``"files"``, no auth): the result PNG at the requested size.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from aiohttp import web

from .common import (
    FakeUpstream,
    RecordedRequest,
    ScriptedFailure,
    color_for,
    failure_of,
    image_bytes,
    json_response,
    make_app,
    malformed_json_response,
    new_id,
    origin,
    parse_size,
    record_of,
    retry_after,
    serve_files,
)

ALLOWED_FIELDS: Final = frozenset(
    {
        "model",
        "prompt",
        "negative_prompt",
        "size",
        "seed",
        "steps",
        "guidance",
        "image_url",
        "loras",
    }
)
DEFAULT_POLL_FAILURE: Final = "Image generation failed: the inference worker returned an error."


@dataclass(slots=True)
class ModelScopeTask:
    task_id: str
    request_id: str
    body: dict[str, Any]
    width: int
    height: int
    polls: int = 0
    status: str = "PENDING"
    output_images: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None


class ModelScopeState(FakeUpstream):
    provider = "modelscope"
    endpoints = frozenset({"submit", "poll", "files"})
    public_endpoints = frozenset({"files"})
    failure_kinds = FakeUpstream.failure_kinds | {"poll_failed"}
    default_targets: ClassVar[Mapping[str, frozenset[str]]] = {
        "poll_failed": frozenset({"poll"}),
        "*": frozenset({"submit"}),
    }

    def __init__(
        self,
        *,
        expected_key: str | None = None,
        hang_seconds: float = 30.0,
        pending_polls: int = 2,
        models: Iterable[str] | None = None,
    ) -> None:
        super().__init__(expected_key=expected_key, hang_seconds=hang_seconds)
        self.pending_polls = pending_polls
        """Polls answered PENDING/RUNNING before the task answers SUCCEED (0 = first poll)."""
        self.models: frozenset[str] | None = None if models is None else frozenset(models)
        self.tasks: dict[str, ModelScopeTask] = {}

    def render_failure(
        self, failure: ScriptedFailure, rec: RecordedRequest, request: web.Request
    ) -> web.StreamResponse | None:
        kind, msg = failure.kind, failure.message
        if kind == "rate_limit":
            return ms_error(
                429,
                msg or "Request rate limit exceeded: you have reached today's API call quota.",
                retry_after(),
            )
        if kind == "bad_key":
            return ms_error(
                401, msg or "Invalid ModelScope SDK token. Please check your access token."
            )
        if kind == "server_error":
            return ms_error(500, msg or "Internal server error.")
        if kind == "malformed":
            if rec.endpoint == "poll":
                return malformed_json_response('{"task_id": "x", "task_status": "SUCC')
            return malformed_json_response('{"task_id": "')
        if kind == "content_policy":
            return ms_error(
                400,
                msg or "Input data may contain inappropriate content (content moderation failed).",
            )
        return None  # poll_failed is handled by the poll handler


STATE: Final = web.AppKey("pixgate_fake_modelscope", ModelScopeState)


def state(app: web.Application) -> ModelScopeState:
    return app[STATE]


def create_app(
    *,
    expected_key: str | None = None,
    hang_seconds: float = 30.0,
    pending_polls: int = 2,
    models: Iterable[str] | None = None,
) -> web.Application:
    """``pending_polls``: non-terminal poll answers before SUCCEED. ``models``: accepted model
    ids (``None`` = any non-empty id)."""
    st = ModelScopeState(
        expected_key=expected_key,
        hang_seconds=hang_seconds,
        pending_polls=pending_polls,
        models=models,
    )
    app = make_app(st, STATE)
    app.router.add_post("/v1/images/generations", _submit, name="submit")
    app.router.add_get("/v1/tasks/{task_id}", _poll, name="poll")
    app.router.add_get("/files/{name}", serve_files("NoSuchKey"), name="files")
    return app


def ms_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response(
        {"errors": {"code": status, "message": message}, "request_id": new_id()}, status, headers
    )


def _check_number(body: dict[str, Any], name: str, lo: float, hi: float, *, integer: bool) -> None:
    if name not in body:
        return
    value = body[name]
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not lo <= value <= hi:
        raise ValueError(
            f"Invalid parameter '{name}': expected a value in [{lo}, {hi}], got {value!r}."
        )


def _validate(body: Any, models: frozenset[str] | None) -> tuple[int, int]:
    if not isinstance(body, dict):
        raise ValueError("Request body must be a JSON object.")
    unknown = sorted(set(body) - ALLOWED_FIELDS)
    if unknown:
        raise ValueError(f"Unsupported parameter(s) for this model: {', '.join(unknown)}.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("Missing required parameter 'model'.")
    if models is not None and model not in models:
        raise ValueError(f"Model '{model}' is not supported by API-Inference.")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("Missing required parameter 'prompt'.")
    if len(prompt) >= 2000:
        raise ValueError("Invalid parameter 'prompt': must be shorter than 2000 characters.")
    if "negative_prompt" in body and not isinstance(body["negative_prompt"], str):
        raise ValueError("Invalid parameter 'negative_prompt': expected a string.")
    size = (1024, 1024)
    if "size" in body:
        parsed = parse_size(body["size"])
        if parsed is None or not all(64 <= side <= 2048 for side in parsed):
            raise ValueError(
                f"Invalid parameter 'size': {body['size']!r} (expected 'WxH', 64..2048)."
            )
        size = parsed
    _check_number(body, "seed", 0, 2**31 - 1, integer=True)
    _check_number(body, "steps", 1, 100, integer=True)
    _check_number(body, "guidance", 1.5, 20, integer=False)
    if "image_url" in body:
        urls = body["image_url"]
        urls = urls if isinstance(urls, list) else [urls]
        if not urls or not all(isinstance(u, str) and u for u in urls):
            raise ValueError(
                "Invalid parameter 'image_url': expected a URL string or a list of them."
            )
    if "loras" in body:
        loras = body["loras"]
        if isinstance(loras, dict):
            weights = list(loras.values())
            if (
                not 1 <= len(loras) <= 6
                or not all(isinstance(w, int | float) and not isinstance(w, bool) for w in weights)
                or abs(sum(weights) - 1.0) > 1e-6
            ):
                raise ValueError(
                    "Invalid parameter 'loras': up to 6 LoRAs whose weights sum to 1.0."
                )
        elif not isinstance(loras, str) or not loras:
            raise ValueError("Invalid parameter 'loras': expected a repo id or {repo_id: weight}.")
    return size


async def _submit(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    rec = record_of(request)
    if request.headers.get("X-ModelScope-Async-Mode", "").strip().lower() != "true":
        st.reject("submit: missing X-ModelScope-Async-Mode: true")
        return ms_error(
            400,
            "This model only supports asynchronous calls. Please set the request header "
            "'X-ModelScope-Async-Mode: true' and poll /v1/tasks/{task_id} for the result.",
        )
    try:
        if rec.json_error is not None or rec.content_type != "application/json":
            raise ValueError(f"Request body must be JSON ({rec.content_type}, {rec.json_error}).")
        width, height = _validate(rec.json, st.models)
    except ValueError as exc:
        st.reject(f"submit: {exc}")
        return ms_error(400, str(exc))
    task = ModelScopeTask(
        task_id=new_id(), request_id=new_id(), body=rec.json, width=width, height=height
    )
    st.tasks[task.task_id] = task
    return json_response({"task_id": task.task_id, "request_id": task.request_id})


def _task_not_found() -> web.Response:
    return json_response(
        {
            "request_id": new_id(),
            "errors": {"code": 500, "message": "task not found"},
            "task_status": "FAILED",
        }
    )


async def _poll(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    task = st.tasks.get(request.match_info["task_id"])
    if request.headers.get("X-ModelScope-Task-Type", "").strip() != "image_generation":
        st.reject("poll: missing X-ModelScope-Task-Type: image_generation")
        return _task_not_found()
    if task is None:
        st.reject(f"poll: unknown task {request.match_info['task_id']!r}")
        return _task_not_found()
    failure = failure_of(request)
    if task.status not in ("SUCCEED", "FAILED"):
        task.polls += 1
        if failure is not None and failure.kind == "poll_failed":
            task.status = "FAILED"
            task.error = {"code": 500, "message": failure.message or DEFAULT_POLL_FAILURE}
        elif task.polls <= st.pending_polls:
            task.status = "PENDING" if task.polls == 1 else "RUNNING"
        else:
            name = f"{task.task_id}.png"
            prompt = task.body.get("prompt")
            data = image_bytes(
                "png", task.width, task.height, color_for(prompt, task.body.get("seed"))
            )
            st.store_file(name, data, "image/png")
            task.status = "SUCCEED"
            task.output_images = [f"{origin(request)}/files/{name}"]
    body: dict[str, Any] = {
        "request_id": new_id(),
        "task_id": task.task_id,
        "task_status": task.status,
    }
    if task.status == "SUCCEED":
        body["output_images"] = task.output_images
    if task.status == "FAILED" and task.error is not None:
        body["errors"] = task.error
    return json_response(body)
