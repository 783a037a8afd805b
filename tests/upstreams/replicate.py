"""Fake Replicate predictions API (provider-apis.md §9).

Routes (gateway base URL ``{base}/v1``), ``Authorization: Bearer <token>``:

* ``POST /v1/models/{owner}/{name}/predictions`` (endpoint ``"create"``): ``{"input": {...}}``.
  Models: ``black-forest-labs/flux-schnell`` and ``flux-dev`` (``prompt``, ``aspect_ratio``,
  ``num_outputs`` 1..4, ``seed``, ``output_format`` ``webp|jpg|png``, ``num_inference_steps``,
  ``guidance``, ``disable_safety_checker``; dev also ``image`` + ``prompt_strength``; output is
  a list), ``flux-1.1-pro`` and ``flux-kontext-pro`` (no ``num_outputs``; Kontext takes
  ``input_image``; output is one string). With ``Prefer: wait`` (or ``wait=N``) the answer is
  the finished prediction when the run takes at most ``wait_finishes`` polls' worth of time
  (default: it does), else ``starting``.
* ``GET /v1/predictions/{id}`` (endpoint ``"get"``): ``processing`` for ``pending_polls``
  polls after the create, then the final prediction.
* ``GET /files/{name}`` (endpoint ``"files"``, no auth): replicate.delivery.

Failures: ``server_error`` makes the prediction end ``failed`` with an ``error`` string;
``content_policy`` ends it ``failed`` with the NSFW checker's message; ``rate_limit`` and
``bad_key`` are RFC 7807 problem answers on create.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from aiohttp import web

from .common import (
    RETRY_AFTER_SECONDS,
    FakeUpstream,
    RecordedRequest,
    ScriptedFailure,
    color_for,
    decode_data_uri,
    failure_of,
    image_bytes,
    image_info,
    json_response,
    make_app,
    malformed_json_response,
    new_id,
    origin,
    record_of,
    retry_after,
    serve_files,
)  # fmt: skip

RATIOS: Final = {
    "1:1": (1024, 1024), "16:9": (1344, 768), "9:16": (768, 1344), "3:2": (1216, 832),
    "2:3": (832, 1216), "5:4": (1088, 896), "4:5": (896, 1088), "21:9": (1536, 640),
    "9:21": (640, 1536),
}  # fmt: skip
BATCH: Final = frozenset({"black-forest-labs/flux-schnell", "black-forest-labs/flux-dev"})
SINGLE: Final = frozenset({"black-forest-labs/flux-1.1-pro", "black-forest-labs/flux-kontext-pro"})
COMMON: Final = frozenset(
    {"prompt", "aspect_ratio", "seed", "output_format", "num_inference_steps", "guidance",
     "disable_safety_checker", "output_quality"}
)  # fmt: skip
NSFW: Final = "NSFW content detected. Try running it again, or try a different prompt."
EXT: Final = {"jpg": "jpeg", "png": "png", "webp": "webp"}


@dataclass
class _Prediction:
    id: str
    model: str
    input: dict[str, Any]
    size: tuple[int, int]
    outcome: str = "succeeded"
    error: str | None = None
    polls: int = 0
    output: Any = None
    urls: dict[str, str] = field(default_factory=dict)


class ReplicateState(FakeUpstream):
    provider = "replicate"
    endpoints = frozenset({"create", "get", "files"})
    public_endpoints = frozenset({"files"})
    default_targets: ClassVar[Mapping[str, frozenset[str]]] = {"*": frozenset({"create"})}

    def __init__(
        self, *, expected_key: str | None, pending_polls: int, finishes_in_wait: bool
    ) -> None:
        super().__init__(expected_key=expected_key)
        self.pending_polls = pending_polls
        self.finishes_in_wait = finishes_in_wait
        self.predictions: dict[str, _Prediction] = {}

    def render_failure(
        self, failure: ScriptedFailure, rec: RecordedRequest, request: web.Request
    ) -> web.StreamResponse | None:
        kind, msg = failure.kind, failure.message
        if kind == "rate_limit":
            detail = (
                msg
                or f"Request was throttled. Expected available in {RETRY_AFTER_SECONDS} seconds."
            )
            return problem(429, "Request was throttled", detail, retry_after())
        if kind == "bad_key":
            return problem(
                401, "Unauthenticated", msg or "You did not pass a valid authentication token"
            )
        if kind == "malformed":
            return malformed_json_response('{"id":"gm3q","status":"succeeded","output":["ht')
        return None  # server_error, content_policy: the prediction fails


STATE: Final = web.AppKey("pixgate_fake_replicate", ReplicateState)


def state(app: web.Application) -> ReplicateState:
    return app[STATE]


def create_app(
    *, expected_key: str | None = None, pending_polls: int = 1, finishes_in_wait: bool = True
) -> web.Application:
    st = ReplicateState(
        expected_key=expected_key, pending_polls=pending_polls, finishes_in_wait=finishes_in_wait
    )
    app = make_app(st, STATE)
    app.router.add_post("/v1/models/{owner}/{name}/predictions", _create, name="create")
    app.router.add_get("/v1/predictions/{id}", _get, name="get")
    app.router.add_get("/files/{name}", serve_files(), name="files")
    return app


def problem(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None
) -> web.Response:
    return json_response({"title": title, "detail": detail, "status": status}, status, headers)


def _validate(model: str, body: Any) -> tuple[dict[str, Any], tuple[int, int]]:
    if model not in BATCH | SINGLE:
        raise LookupError(model)
    inp = body.get("input") if isinstance(body, dict) else None
    if not isinstance(inp, dict) or not isinstance(inp.get("prompt"), str):
        raise ValueError("input.prompt: prompt is required")
    allowed = COMMON | ({"num_outputs", "go_fast", "megapixels"} if model in BATCH else set())
    allowed |= {"image", "prompt_strength"} if model.endswith("flux-dev") else set()
    allowed |= {"input_image"} if "kontext" in model else set()
    unknown = sorted(set(inp) - allowed)
    if unknown:
        raise ValueError(f"input.{unknown[0]}: Additional property {unknown[0]} is not allowed")
    size = RATIOS.get(inp.get("aspect_ratio", "1:1"))
    if size is None:
        raise ValueError("input.aspect_ratio: must be one of the following: " + ", ".join(RATIOS))
    if not 1 <= inp.get("num_outputs", 1) <= 4:
        raise ValueError("input.num_outputs: Must be less than or equal to 4")
    if inp.get("output_format", "webp") not in EXT:
        raise ValueError("input.output_format: must be one of webp, jpg, png")
    for name in ("image", "input_image"):
        if name in inp:
            decoded = decode_data_uri(str(inp[name]))
            if decoded is None and not str(inp[name]).startswith("http"):
                raise ValueError(f"input.{name}: must be a URI")
            if decoded is not None:
                size = image_info(decoded[1])[1:3]
    return inp, size


def _finish(request: web.Request, pred: _Prediction) -> None:
    st = state(request.app)
    if pred.outcome != "succeeded":
        return
    fmt = EXT[pred.input.get("output_format", "webp")]
    urls = []
    for index in range(pred.input.get("num_outputs", 1)):
        name = f"{pred.id}-{index}.{fmt}"
        st.store_file(
            name,
            image_bytes(fmt, *pred.size, color_for(pred.input["prompt"], index)),
            f"image/{fmt}",
        )
        urls.append(f"{origin(request)}/files/{name}")
    pred.output = urls if pred.model in BATCH else urls[0]


def _view(pred: _Prediction, status: str) -> dict[str, Any]:
    done = status in ("succeeded", "failed")
    return {
        "id": pred.id,
        "model": pred.model,
        "version": "dp-fake",
        "input": pred.input,
        "logs": "",
        "output": pred.output if status == "succeeded" else None,
        "data_removed": False,
        "error": pred.error if status == "failed" else None,
        "status": status,
        "created_at": "2025-01-01T00:00:00.000Z",
        "completed_at": "2025-01-01T00:00:02.000Z" if done else None,
        "metrics": {"predict_time": 1.2} if done else {},
        "urls": pred.urls,
    }


async def _create(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    rec = record_of(request)
    model = f"{request.match_info['owner']}/{request.match_info['name']}"
    try:
        inp, size = _validate(model, rec.json)
    except LookupError:
        st.reject(f"unknown model {model}")
        return problem(404, "Not found", "The requested resource could not be found.")
    except ValueError as exc:
        st.reject(str(exc))
        return problem(422, "Input validation failed", str(exc))
    prefer = request.headers.get("Prefer", "")
    if prefer and not (prefer == "wait" or (prefer.startswith("wait=") and prefer[5:].isdigit())):
        st.reject(f"Prefer: {prefer}")
        return problem(400, "Invalid Prefer header", "Prefer must be 'wait' or 'wait=N'")
    pred = _Prediction(new_id()[:26], model, inp, size)
    failure = failure_of(request)
    if failure is not None:
        pred.outcome = "failed"
        pred.error = (
            NSFW
            if failure.kind == "content_policy"
            else (failure.message or "CUDA error: out of memory")
        )
    base = f"{origin(request)}/v1/predictions/{pred.id}"
    pred.urls = {
        "get": base,
        "cancel": f"{base}/cancel",
        "web": f"https://replicate.com/p/{pred.id}",
    }
    st.predictions[pred.id] = pred
    if prefer and st.finishes_in_wait:
        pred.polls = st.pending_polls  # done by the time the wait ends
        _finish(request, pred)
        return json_response(_view(pred, pred.outcome), 201)
    return json_response(_view(pred, "starting"), 201)


async def _get(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    pred = st.predictions.get(request.match_info["id"])
    if pred is None:
        return problem(404, "Not found", "The requested resource could not be found.")
    pred.polls += 1
    if pred.polls <= st.pending_polls:
        return json_response(_view(pred, "processing"))
    if pred.output is None:
        _finish(request, pred)
    return json_response(_view(pred, pred.outcome))
