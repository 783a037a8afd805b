"""Shared machinery for the fake upstream servers.

Every fake is an ordinary :class:`aiohttp.web.Application` built by :func:`make_app` around a
:class:`FakeUpstream` subclass (the per-app state object). A middleware installed by
:func:`make_app`:

1. records every request (including 404s and file downloads) into ``state.requests``;
2. consumes the first scripted failure (see :meth:`FakeUpstream.fail_next`) that targets the
   matched endpoint and answers it in the provider's own error shape;
3. enforces ``state.expected_key`` with the provider's documented auth form;
4. hands the request to the endpoint handler, which validates the body the way the real API does.

Nothing here opens an outbound connection.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import json
import re
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from aiohttp import web
from aiohttp.typedefs import Handler
from PIL import Image

#: Failure kinds every fake understands.
GENERIC_FAILURES: Final = frozenset(
    {"rate_limit", "bad_key", "server_error", "malformed", "timeout", "content_policy"}
)
#: Value of the ``Retry-After`` header sent with every scripted ``rate_limit``.
RETRY_AFTER_SECONDS: Final = 7


def retry_after() -> dict[str, str]:
    """The headers of a scripted ``rate_limit``: ``Retry-After`` in seconds."""
    return {"Retry-After": str(RETRY_AFTER_SECONDS)}


_DEFAULT_COLOR: Final = (64, 128, 192)
_MAX_BODY: Final = 128 * 1024 * 1024
_SIZE_RE: Final = re.compile(r"^([1-9][0-9]{0,5})[xX]([1-9][0-9]{0,5})$")


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def image_bytes(
    fmt: str,
    width: int,
    height: int,
    color: tuple[int, int, int] = _DEFAULT_COLOR,
    *,
    transparent: bool = False,
) -> bytes:
    """Encode a solid-colour ``width`` x ``height`` image as ``png``/``jpeg``/``webp``."""
    fmt = fmt.lower()
    pil_format = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}.get(fmt)
    if pil_format is None:
        raise ValueError(f"unsupported image format {fmt!r}")
    if transparent and pil_format != "JPEG":
        img = Image.new("RGBA", (width, height), (*color, 0))
    else:
        img = Image.new("RGB", (width, height), color)
    buf = io.BytesIO()
    if pil_format == "JPEG":
        img.save(buf, "JPEG", quality=80)
    elif pil_format == "WEBP":
        img.save(buf, "WEBP", quality=80)
    else:
        img.save(buf, "PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def png_bytes(
    width: int,
    height: int,
    color: tuple[int, int, int] = _DEFAULT_COLOR,
    *,
    transparent: bool = False,
) -> bytes:
    """A solid-colour PNG of exactly ``width`` x ``height`` (RGBA, fully transparent if asked)."""
    return image_bytes("png", width, height, color, transparent=transparent)


def jpeg_bytes(width: int, height: int, color: tuple[int, int, int] = _DEFAULT_COLOR) -> bytes:
    """A solid-colour JPEG of exactly ``width`` x ``height``."""
    return image_bytes("jpeg", width, height, color)


def webp_bytes(width: int, height: int, color: tuple[int, int, int] = _DEFAULT_COLOR) -> bytes:
    """A solid-colour WebP of exactly ``width`` x ``height``."""
    return image_bytes("webp", width, height, color)


def image_info(data: bytes) -> tuple[str, int, int, str]:
    """Decode ``data`` with Pillow: ``(format, width, height, mode)``; raises ``ValueError``."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return (img.format or "").upper(), img.width, img.height, img.mode
    except Exception as exc:  # Pillow raises a zoo of exception types
        raise ValueError(f"not a decodable image: {exc}") from exc


def color_for(*material: object) -> tuple[int, int, int]:
    """A deterministic colour derived from ``material`` (prompt, index, seed ...)."""
    digest = hashlib.sha256(repr(material).encode()).digest()
    return digest[0], digest[1], digest[2]


def parse_size(value: object) -> tuple[int, int] | None:
    """``"1024x768"`` -> ``(1024, 768)``; anything else -> ``None``."""
    if not isinstance(value, str):
        return None
    m = _SIZE_RE.match(value.strip())
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2))


def decode_data_uri(value: str) -> tuple[str, bytes] | None:
    """``data:<mime>;base64,<payload>`` -> ``(mime, bytes)``; ``None`` if it is not one."""
    if not value.startswith("data:"):
        return None
    header, sep, payload = value[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        return None
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None
    return header[: -len(";base64")], raw


# --------------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    """One multipart or urlencoded form part, as it arrived."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def is_file(self) -> bool:
        return self.filename is not None

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")

    def image(self) -> tuple[str, int, int, str] | None:
        """``(format, width, height, mode)`` if the payload decodes as an image, else ``None``."""
        try:
            return image_info(self.data)
        except ValueError:
            return None


@dataclass(slots=True)
class RecordedRequest:
    """Everything a test may want to assert about one request the fake received."""

    method: str
    path: str
    """Percent-decoded path, e.g. ``/v1/images/generations``."""
    raw_path: str
    """Path and query exactly as sent on the wire (still percent-encoded)."""
    query: dict[str, str]
    """Query parameters (last value wins); see ``query_items`` for repeats."""
    query_items: list[tuple[str, str]]
    headers: dict[str, str]
    """Header names lower-cased; repeated headers joined with ``", "``."""
    content_type: str
    body_size: int
    endpoint: str | None
    """Name of the matched endpoint (e.g. ``"generations"``, ``"poll"``), ``None`` if unmatched."""
    json: Any = None
    """Parsed JSON body when the content type is JSON and it parsed, else ``None``."""
    json_error: str | None = None
    parts: list[Part] = field(default_factory=list)
    """Multipart / urlencoded parts in arrival order (text fields and files)."""
    body_error: str | None = None
    received_at: float = field(default_factory=time.monotonic)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def field(self, name: str) -> str | None:
        """First text (non-file) form field called ``name``."""
        for part in self.parts:
            if part.name == name and part.filename is None:
                return part.text
        return None

    def form(self) -> dict[str, list[str]]:
        """Text form fields: name -> values in order."""
        out: dict[str, list[str]] = {}
        for part in self.parts:
            if part.filename is None:
                out.setdefault(part.name, []).append(part.text)
        return out

    def files(self, name: str | None = None) -> list[Part]:
        """File parts, optionally only those whose field name is ``name``."""
        return [
            p for p in self.parts if p.filename is not None and (name is None or p.name == name)
        ]

    @property
    def part_names(self) -> list[str]:
        return [p.name for p in self.parts]


async def _record(request: web.Request, endpoint: str | None) -> RecordedRequest:
    headers: dict[str, str] = {}
    for key, value in request.headers.items():
        low = key.lower()
        headers[low] = f"{headers[low]}, {value}" if low in headers else value
    query_items = list(request.rel_url.query.items())
    rec = RecordedRequest(
        method=request.method,
        path=request.path,
        raw_path=request.raw_path,
        query={k: v for k, v in query_items},
        query_items=query_items,
        headers=headers,
        content_type=request.content_type,
        body_size=0,
        endpoint=endpoint,
    )
    if not request.body_exists:
        return rec
    ctype = request.content_type
    try:
        if ctype == "multipart/form-data":
            form = await request.post()
            for field_name, item in form.items():
                if isinstance(item, web.FileField):
                    data = item.file.read()
                    item.file.seek(0)
                    rec.parts.append(Part(field_name, item.filename, item.content_type, data))
                elif isinstance(item, bytes | bytearray):
                    rec.parts.append(Part(field_name, None, None, bytes(item)))
                else:
                    rec.parts.append(Part(field_name, None, None, item.encode()))
            rec.body_size = request.content.total_bytes
            return rec
        raw = await request.read()
    except Exception as exc:  # malformed multipart and friends: keep recording
        rec.body_error = f"{type(exc).__name__}: {exc}"
        rec.body_size = request.content.total_bytes
        return rec
    rec.body_size = len(raw)
    if ctype == "application/json" or ctype.endswith("+json"):
        try:
            rec.json = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            rec.json_error = str(exc)
    elif ctype == "application/x-www-form-urlencoded":
        for name, value in urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), True):
            rec.parts.append(Part(name, None, None, value.encode()))
    return rec


# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScriptedFailure:
    kind: str
    on: frozenset[str] | None = None
    """Endpoints this failure may fire on; ``None`` = the kind's default endpoints."""
    message: str | None = None
    """Overrides the provider's default error message where the shape has one."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    data: bytes
    content_type: str


RECORD_KEY: Final = web.RequestKey("fake_upstream_record", RecordedRequest)
FAILURE_KEY: Final = web.RequestKey("fake_upstream_failure", ScriptedFailure)


class FakeUpstream:
    """Per-app state shared by all fakes. Subclasses set the class attributes and override
    :meth:`render_failure` (provider error shapes) and, if needed, :meth:`presented_key`."""

    provider: ClassVar[str] = "fake"
    endpoints: ClassVar[frozenset[str]] = frozenset()
    public_endpoints: ClassVar[frozenset[str]] = frozenset()
    """Endpoints that never require ``expected_key`` (e.g. signed file URLs)."""
    failure_kinds: ClassVar[frozenset[str]] = GENERIC_FAILURES
    default_targets: ClassVar[Mapping[str, frozenset[str]]] = {}
    """kind -> endpoints a failure scripted without ``on=`` fires on; key ``"*"`` = fallback."""

    def __init__(self, *, expected_key: str | None = None, hang_seconds: float = 30.0) -> None:
        self.requests: list[RecordedRequest] = []
        self.expected_key = expected_key
        self.hang_seconds = hang_seconds
        self.files: dict[str, StoredFile] = {}
        self.rejections: list[str] = []
        """Human-readable reason for every request the fake rejected (debugging aid)."""
        self._failures: list[ScriptedFailure] = []
        self._closing = asyncio.Event()

    # -- scripting -----------------------------------------------------------------------------

    def fail_next(
        self,
        kind: str,
        times: int = 1,
        *,
        on: str | Iterable[str] | None = None,
        message: str | None = None,
    ) -> None:
        """Queue ``times`` scripted failures of ``kind``.

        Each queued failure is consumed by the next request to one of its target endpoints
        (``on``, or the kind's defaults); requests to other endpoints pass untouched.
        """
        if kind not in self.failure_kinds:
            raise ValueError(
                f"{self.provider}: unknown failure kind {kind!r}; "
                f"known: {sorted(self.failure_kinds)}"
            )
        targets: frozenset[str] | None
        if on is None:
            targets = None
        else:
            targets = frozenset([on] if isinstance(on, str) else on)
            unknown = targets - self.endpoints
            if unknown:
                raise ValueError(
                    f"{self.provider}: unknown endpoint(s) {sorted(unknown)}; "
                    f"known: {sorted(self.endpoints)}"
                )
        self._failures.extend(ScriptedFailure(kind, targets, message) for _ in range(times))

    def targets_of(self, failure: ScriptedFailure) -> frozenset[str]:
        if failure.on is not None:
            return failure.on
        return self.default_targets.get(failure.kind, self.default_targets.get("*", self.endpoints))

    def take_failure(self, endpoint: str) -> ScriptedFailure | None:
        for index, failure in enumerate(self._failures):
            if endpoint in self.targets_of(failure):
                return self._failures.pop(index)
        return None

    @property
    def pending_failures(self) -> list[str]:
        """Kinds still queued (not yet consumed)."""
        return [f.kind for f in self._failures]

    def clear_failures(self) -> None:
        self._failures.clear()

    def reset(self) -> None:
        """Forget recorded requests, rejections and queued failures."""
        self.requests.clear()
        self.rejections.clear()
        self._failures.clear()

    # -- inspection ----------------------------------------------------------------------------

    def calls(self, endpoint: str) -> list[RecordedRequest]:
        """Recorded requests that matched ``endpoint``."""
        return [r for r in self.requests if r.endpoint == endpoint]

    @property
    def last(self) -> RecordedRequest:
        if not self.requests:
            raise AssertionError(f"{self.provider}: no request recorded")
        return self.requests[-1]

    # -- serving helpers -----------------------------------------------------------------------

    def store_file(self, key: str, data: bytes, content_type: str) -> None:
        self.files[key] = StoredFile(data, content_type)

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    async def sleep(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the app shuts down first; returns ``True`` if shutting down."""
        if seconds <= 0:
            return self._closing.is_set()
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _on_shutdown(self, _app: web.Application) -> None:
        self._closing.set()

    def reject(self, reason: str) -> None:
        self.rejections.append(reason)

    # -- provider hooks ------------------------------------------------------------------------

    def presented_key(self, request: web.Request) -> str | None:
        """The API key the client presented (default: ``Authorization: Bearer <key>``)."""
        return bearer_token(request)

    def render_failure(
        self, failure: ScriptedFailure, rec: RecordedRequest, request: web.Request
    ) -> web.StreamResponse | None:
        """Provider-shaped response for ``failure``; ``None`` lets the handler deal with it
        (it finds it under ``request[FAILURE_KEY]``)."""
        raise NotImplementedError


#: Every fake's state, whatever its own key (for handlers that fakes share).
UPSTREAM_KEY: Final = web.AppKey("fake_upstream", FakeUpstream)


def bearer_token(request: web.Request) -> str | None:
    value = request.headers.get("Authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode(),
        content_type="application/json",
        headers=dict(headers or {}),
    )


def malformed_json_response(prefix: str) -> web.Response:
    """A 200 whose JSON body is cut off mid-way."""
    return web.Response(status=200, body=prefix.encode(), content_type="application/json")


def new_id() -> str:
    return uuid.uuid4().hex


def make_app(state: FakeUpstream, key: web.AppKey[Any]) -> web.Application:
    """An application wired with the recording / failure / auth middleware for ``state``."""

    @web.middleware
    async def upstream_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        endpoint = request.match_info.route.name
        rec = await _record(request, endpoint)
        state.requests.append(rec)
        request[RECORD_KEY] = rec
        if endpoint is None:
            return await handler(request)
        failure = state.take_failure(endpoint)
        if failure is not None:
            if failure.kind == "timeout":
                if await state.sleep(state.hang_seconds):
                    return web.Response(status=503, text="fake upstream shutting down")
            else:
                response = state.render_failure(failure, rec, request)
                if response is not None:
                    return response
                request[FAILURE_KEY] = failure
        if (
            state.expected_key is not None
            and endpoint not in state.public_endpoints
            and state.presented_key(request) != state.expected_key
        ):
            state.reject("missing or wrong API key")
            denied = state.render_failure(ScriptedFailure("bad_key"), rec, request)
            assert denied is not None
            return denied
        return await handler(request)

    app = web.Application(middlewares=[upstream_middleware], client_max_size=_MAX_BODY)
    app[key] = state
    app[UPSTREAM_KEY] = state
    app.on_shutdown.append(state._on_shutdown)
    return app


def record_of(request: web.Request) -> RecordedRequest:
    return request[RECORD_KEY]


def failure_of(request: web.Request) -> ScriptedFailure | None:
    return request.get(FAILURE_KEY)


def origin(request: web.Request) -> str:
    """``http://127.0.0.1:PORT`` as the client addressed us (used to build absolute URLs)."""
    return str(request.url.origin())


def serve_files(not_found: str = "not found") -> Handler:
    """The endpoint that serves the files a fake stored (``store_file``) by the ``{name}`` in
    its route; a 404 with the provider's own text for any other name."""

    async def serve(request: web.Request) -> web.StreamResponse:
        stored = request.app[UPSTREAM_KEY].files.get(request.match_info["name"])
        if stored is None:
            return web.Response(status=404, text=not_found)
        return web.Response(body=stored.data, content_type=stored.content_type)

    return serve
