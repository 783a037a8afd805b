"""Fake Pollinations image API (provider-apis.md §7.2, legacy §7.1).

Routes (gateway base URL ``{base}``):

* ``GET /image/{prompt}`` (endpoint ``"image"``, new gateway) and ``GET /prompt/{prompt}``
  (endpoint ``"prompt"``, legacy) with query ``model`` (default ``flux``), ``width``/``height``
  (default 1024), ``seed`` (default 42), ``nologo``, ``private``, ``enhance``, ``safe``,
  ``transparent``, ``quality``, ``image``, ``referrer``, ``negative_prompt``, ``key``/``token``.
  Answers raw ``image/jpeg`` bytes of exactly ``width`` x ``height`` (``image/png`` RGBA when
  ``transparent=true``). Each decoded prompt is appended to ``state.prompts`` (and the
  still-encoded path segment to ``state.raw_prompts``).
* ``GET /image/models`` (endpoint ``"models"``): JSON list of model ids.

Auth: ``Authorization: Bearer <key>`` or ``?key=<key>`` (legacy ``?token=`` too); only checked
when ``expected_key`` is set. Error body shape is unverified upstream (§7.2 "(?)"); the fake
uses ``{"status":N,"success":false,"error":{"code":"...","message":"..."}}``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from typing import ClassVar, Final

from aiohttp import web

from .common import (
    FakeUpstream,
    RecordedRequest,
    ScriptedFailure,
    bearer_token,
    color_for,
    image_bytes,
    json_response,
    make_app,
    retry_after,
)

DEFAULT_MODELS: Final = ("flux", "turbo", "gptimage", "kontext", "seedream", "nanobanana", "zimage")
MAX_SIDE: Final = 4096
_TRUE: Final = ("true", "1", "yes")


class PollinationsState(FakeUpstream):
    provider = "pollinations"
    endpoints = frozenset({"image", "prompt", "models"})
    default_targets: ClassVar[Mapping[str, frozenset[str]]] = {"*": frozenset({"image", "prompt"})}

    def __init__(
        self,
        *,
        expected_key: str | None = None,
        hang_seconds: float = 30.0,
        models: Iterable[str] = DEFAULT_MODELS,
    ) -> None:
        super().__init__(expected_key=expected_key, hang_seconds=hang_seconds)
        self.models: tuple[str, ...] = tuple(models)
        self.prompts: list[str] = []
        """Percent-decoded prompts, one per image request that reached the handler."""
        self.raw_prompts: list[str] = []
        """The same prompts exactly as they appeared (encoded) in the request path."""

    def presented_key(self, request: web.Request) -> str | None:
        return bearer_token(request) or request.query.get("key") or request.query.get("token")

    def render_failure(
        self, failure: ScriptedFailure, rec: RecordedRequest, request: web.Request
    ) -> web.StreamResponse | None:
        kind, msg = failure.kind, failure.message
        if kind == "rate_limit":
            return pollinations_error(
                429,
                "RATE_LIMITED",
                msg or "Too many requests. Please wait before making another request.",
                retry_after(),
            )
        if kind == "bad_key":
            return pollinations_error(
                401, "UNAUTHORIZED", msg or "Authentication required. Invalid or missing API key."
            )
        if kind == "server_error":
            return pollinations_error(500, "INTERNAL_ERROR", msg or "Internal Server Error")
        if kind == "malformed":
            # Claims to be a JPEG, but the body is cut off after a few bytes.
            return web.Response(body=image_bytes("jpeg", 64, 64)[:48], content_type="image/jpeg")
        if kind == "content_policy":
            return pollinations_error(
                400,
                "CONTENT_POLICY",
                msg or "Your prompt was flagged by the content safety filter.",
            )
        return None


STATE: Final = web.AppKey("pixgate_fake_pollinations", PollinationsState)


def state(app: web.Application) -> PollinationsState:
    return app[STATE]


def create_app(
    *,
    expected_key: str | None = None,
    hang_seconds: float = 30.0,
    models: Iterable[str] = DEFAULT_MODELS,
) -> web.Application:
    """``models``: model ids accepted in ``?model=`` (unknown ids get a 400)."""
    st = PollinationsState(expected_key=expected_key, hang_seconds=hang_seconds, models=models)
    app = make_app(st, STATE)
    app.router.add_get("/image/models", _models, name="models")
    app.router.add_get("/image/{prompt:.+}", _image, name="image")
    app.router.add_get("/prompt/{prompt:.+}", _image, name="prompt")
    return app


def pollinations_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return json_response(
        {"status": status, "success": False, "error": {"code": code, "message": message}},
        status,
        headers,
    )


def _int_query(query: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"'{name}' must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ValueError(f"'{name}' must be between {lo} and {hi}, got {value}")
    return value


async def _image(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    # Decode the prompt ourselves from the raw path so %2F, %3F, %23 etc. are seen exactly once.
    raw_path = request.raw_path.split("?", 1)[0]
    prefix = "/image/" if raw_path.startswith("/image/") else "/prompt/"
    raw_prompt = raw_path[len(prefix) :]
    prompt = urllib.parse.unquote(raw_prompt, errors="replace")
    query = dict(request.query)
    model = query.get("model") or "flux"
    try:
        if model not in st.models:
            raise ValueError(f"Model '{model}' not found. Available models: {', '.join(st.models)}")
        width = _int_query(query, "width", 1024, 1, MAX_SIDE)
        height = _int_query(query, "height", 1024, 1, MAX_SIDE)
        seed = _int_query(query, "seed", 42, -1, 2**53)
    except ValueError as exc:
        st.reject(f"image: {exc}")
        return pollinations_error(400, "BAD_REQUEST", str(exc))
    st.prompts.append(prompt)
    st.raw_prompts.append(raw_prompt)
    color = color_for(model, prompt, seed)
    if query.get("transparent", "").lower() in _TRUE:
        body = image_bytes("png", width, height, color, transparent=True)
        return web.Response(body=body, content_type="image/png")
    return web.Response(body=image_bytes("jpeg", width, height, color), content_type="image/jpeg")


async def _models(request: web.Request) -> web.StreamResponse:
    return json_response(list(state(request.app).models))
