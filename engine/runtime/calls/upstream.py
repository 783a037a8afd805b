"""Send one rendered step request and read the answer into a uniform Reply."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
from aiohttp import hdrs
from aiohttp.helpers import parse_content_type
from yarl import URL

from ... import jsonbytes, rawtext
from ...dsl.origins import OriginPattern, may_receive_key, origin_of
from ...dsl.spec import AuthSpec, RequestSpec, StepSpec
from ..images.imagetypes import sniff
from ..job import InputImage
from ..lifecycle.bodygate import known_length, read_capped
from ..lifecycle.deadline import Deadline, deadline
from ..routing.failures import UpstreamFailure
from .sse import LineTooLong, iter_events
from .wire import Answer, CannotConnect, WireClient, WireError

MAX_BODY = 64 * 1024 * 1024  # larger upstream answers are refused, not buffered
MAX_REDIRECTS = 10
REDIRECTS = frozenset({301, 302, 303, 307, 308})

# Called with (event name, parsed data) for a stream's partial and image events as they arrive.
EventFn = Callable[[str, Any], None]


@dataclass(slots=True)
class Reply:
    """An upstream answer: status, headers (aiohttp's own, names case-insensitive), parsed
    body, and raw bytes if binary."""

    status: int
    headers: Mapping[str, str]
    body: Any
    url: str | URL  # where the answer came from (redirects followed); text only when needed
    raw: bytes | None = None
    mime: str | None = None
    error_event: bool = False  # the stream ended with the step's error event

    def envelope(self, with_headers: bool = True) -> dict[str, Any]:
        """What a provider's `errors` rules read. The headers are copied, names lower-cased,
        only `with_headers` (when a rule may read them: ProviderSpec.errors_read_headers)."""
        headers = {k.lower(): v for k, v in self.headers.items()} if with_headers else {}
        return {"status": self.status, "headers": headers, "body": self.body}


@dataclass(slots=True)
class Outgoing:
    method: str
    url: URL
    headers: dict[str, str]
    data: Any = None
    timeout: float = 60.0
    # Where the key may follow a redirect (engine/dsl/origins.py); set when a header carries it.
    auth_header: str | None = None
    base_url: str = ""
    key_origins: tuple[OriginPattern, ...] = ()

    def describe(self) -> str:
        """For messages: no query (keys), no user or password, no fragment."""
        return f"{self.method} {self.url.with_query(None).with_user(None).with_fragment(None)}"


def build_request(
    spec: RequestSpec, ctx: Mapping[str, Any], base_url: str, auth: AuthSpec, key: str | None
) -> Outgoing:
    """Render a step's request. Pure: no I/O, so `explain` can show it."""
    if spec.url is not None:
        target = str(spec.url.render(ctx))
        url = URL(target, encoded=True)
        if not url.is_absolute():
            url = URL(base_url + "/", encoded=True).join(url)
    else:  # a path under base_url: on its origin whatever the path holds
        path = str(spec.path.render(ctx)) if spec.path is not None else ""
        url = _under(base_url, path)
    # HTTP forbids line breaks in header values: a prompt's become spaces. (Most steps have
    # neither headers nor a query: nothing to render then.)
    headers: dict[str, str] = {}
    if spec.headers.items:
        headers = {k: _header_value(v) for k, v in spec.headers.render(ctx).items()}
    query: dict[str, str] = {}
    if spec.query.items:
        query = {k: _query_value(v) for k, v in spec.query.render(ctx).items()}
    # The key goes only to base_url's origin and the origins listed for it: never to a
    # presigned upload, a CDN or a polling URL on a host nobody named.
    origins = (*auth.send_to, *spec.auth_to)
    on_base = spec.url is None and origin_of(base_url) is not None  # no URL to parse
    may_send = on_base or may_receive_key(url, base_url, origins)
    send_key = key is not None and spec.auth and may_send
    auth_header = None
    if send_key and key is not None:
        if auth.header and auth.value is not None:
            # a call's context names its key already (base_context): no copy then
            keyed = ctx if ctx.get("key") == key else {**ctx, "key": key}
            headers[auth.header] = str(auth.value.render(keyed))
            auth_header = auth.header
        if auth.query:
            query[auth.query] = key
    if query:
        # extend_query keeps the existing query byte for byte (signed poll URLs); a name the
        # URL already carries is replaced instead.
        clash = query.keys() & url.query.keys()
        url = url.update_query(query) if clash else url.extend_query(query)
    data: Any = None
    if spec.json is not None:
        data = jsonbytes.dumps(spec.json.render(ctx))  # sized: a queued request keeps it
        headers.setdefault("Content-Type", "application/json")
    elif spec.form is not None:
        data = {k: _query_value(v) for k, v in spec.form.render(ctx).items()}
    elif spec.multipart is not None:
        data = _multipart(spec, ctx)
    elif spec.body is not None:
        data = str(spec.body.render(ctx)).encode()
        if spec.content_type:
            headers.setdefault("Content-Type", spec.content_type)
    return Outgoing(spec.method, url, headers, data, spec.timeout, auth_header, base_url, origins)


@functools.lru_cache(maxsize=256)  # most steps' paths are constant: the same URL every call
def _under(base_url: str, path: str) -> URL:
    return URL(base_url + ("" if path.startswith("/") else "/") + path, encoded=True)


def _header_value(value: Any) -> str:
    text = str(value)
    return " ".join(text.splitlines()) if "\n" in text or "\r" in text else text


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _multipart(spec: RequestSpec, ctx: Mapping[str, Any]) -> aiohttp.FormData:
    # multipart/form-data even without a file part (FormData would fall back to urlencoded)
    form = aiohttp.FormData(quote_fields=False, default_to_multipart=True)
    for part in spec.multipart or ():
        if part.value is not None:
            value = part.value.render(ctx)
            if value is None or value == "":
                continue
            form.add_field(part.name, _query_value(value) if not isinstance(value, str) else value)
            continue
        files = part.file.render(ctx) if part.file is not None else None
        if files is None:
            continue
        for item in files if isinstance(files, list | tuple) else [files]:
            if not isinstance(item, InputImage):
                continue
            name = str(part.filename.render(ctx)) if part.filename is not None else item.filename
            form.add_field(
                part.name, item.data, filename=name, content_type=part.content_type or item.mime
            )
    return form


async def send(
    client: WireClient,
    out: Outgoing,
    step: StepSpec,
    on_event: EventFn | None = None,
) -> Reply:
    """One exchange, redirects followed. Network problems become `timeout` / `upstream`
    failures. `on_event` sees the stream's `partial_event` and `image_event` events as they
    arrive."""
    try:
        # The whole exchange must end within `timeout`; an event stream only must not go
        # quiet for as long (_read lifts the bound once it knows the answer is one).
        with deadline(out.timeout) as bound:
            headers, body = out.headers, out.data
            if body is not None and not isinstance(body, bytes):
                headers, body = await _encoded(out)
            return await _exchange(client, out, headers, body, step, on_event, bound)
    except TimeoutError:
        raise UpstreamFailure(
            "timeout", f"{out.describe()} timed out after {out.timeout:g}s"
        ) from None
    except CannotConnect as exc:
        raise UpstreamFailure(
            "upstream", f"{out.describe()} failed: cannot connect ({exc})"
        ) from None
    except WireError as exc:
        raise UpstreamFailure("upstream", f"{out.describe()} failed: {exc}") from None


async def _exchange(
    client: WireClient,
    out: Outgoing,
    headers: dict[str, str],
    body: bytes | None,
    step: StepSpec,
    on_event: EventFn | None,
    bound: Deadline,
) -> Reply:
    """Redirects are followed here, with the rules for the key: it goes only to origins that
    may receive it, and `Authorization` never to another origin."""
    method, url = out.method, out.url
    connect = min(out.timeout, 15.0)
    for _ in range(MAX_REDIRECTS + 1):
        answer = await client.exchange(method, url, headers, body, connect)
        try:
            location = answer.headers.get("Location") if answer.status in REDIRECTS else None
            if not location:
                return await _read(answer, step, on_event, bound)
        finally:
            answer.release()
        try:
            target = url.join(URL(location))
        except ValueError:
            raise UpstreamFailure("upstream", "the upstream redirected to an invalid URL") from None
        if target.scheme not in ("http", "https") or not target.raw_host:
            raise UpstreamFailure(
                "upstream", "the upstream redirected to a URL that is not http(s)"
            )
        if answer.status == 303 or (answer.status in (301, 302) and method == "POST"):
            method, body = "GET", None
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        if target.origin() != url.origin():
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        if out.auth_header and not may_receive_key(target, out.base_url, out.key_origins):
            headers = {k: v for k, v in headers.items() if k != out.auth_header}
        url = target.with_fragment(None)
    raise UpstreamFailure("upstream", f"more than {MAX_REDIRECTS} redirects")


async def _encoded(out: Outgoing) -> tuple[dict[str, str], bytes]:
    """A form or multipart body as the bytes to send, with its Content-Type."""
    headers = dict(out.headers)
    data = out.data
    if isinstance(data, aiohttp.FormData):
        payload = data()
        body = await payload.as_bytes()
        content_type = payload.content_type
    elif isinstance(data, dict):
        body = urlencode(data).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        body = str(data).encode()
        content_type = "text/plain; charset=utf-8"
    if not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = content_type
    return headers, body


async def _read(
    resp: Answer,
    step: StepSpec,
    on_event: EventFn | None,
    bound: Deadline,
) -> Reply:
    headers = resp.headers
    mime = _media_type(headers.get(hdrs.CONTENT_TYPE))
    url = resp.url
    mode = step.response
    if mode == "auto":
        mode = _mode_for(mime)
    if mode == "sse" and resp.status < 300 and step.stream is not None:
        bound.clear()  # an event stream may run long (never quiet for `timeout`)
        return await _read_sse(resp, step, headers, url, on_event, quiet=step.request.timeout)
    raw: bytes | bytearray | None = resp.body  # all of it came with the head (under one read)
    if raw is None:
        length = resp.content_length
        if length is not None and length > MAX_BODY:
            raise UpstreamFailure("upstream", f"upstream answer too large ({length} bytes)")
        raw = await read_capped(resp.content, MAX_BODY, known_length(resp))
        if raw is None:
            raise UpstreamFailure("upstream", "upstream answer too large")
    if mode == "bytes" and resp.status < 300:
        data = bytes(raw) if isinstance(raw, bytearray) else raw  # images are kept as bytes
        return Reply(resp.status, headers, None, url, raw=data, mime=sniff(data) or mime)
    return Reply(resp.status, headers, _parse_body(raw, resp.status, mode), url)


@functools.lru_cache(maxsize=64)  # an upstream sends the same few values on every answer
def _media_type(raw: str | None) -> str:
    """`ClientResponse.content_type` (aiohttp's parse, its default when there is none), from
    the header's value: the property parses on each response and copies the parameters."""
    return "application/octet-stream" if raw is None else parse_content_type(raw)[0] or ""


def _mode_for(mime: str) -> str:
    if mime == "text/event-stream":
        return "sse"
    if mime.startswith("image/") or mime == "application/octet-stream":
        return "bytes"
    return "json"


class MalformedBody(str):
    """Text that should have been JSON; kept for the error message."""


def _parse_body(raw: bytes | bytearray, status: int, mode: str) -> Any:
    if not raw:
        return None
    if mode == "text":
        return raw.decode("utf-8", errors="replace")
    try:
        # a successful answer's long strings (base64 images) stay in `raw`, unparsed
        return rawtext.loads(raw) if status < 300 else orjson.loads(raw)
    except orjson.JSONDecodeError:
        return MalformedBody(raw[:500].decode("utf-8", errors="replace"))


async def _read_sse(
    resp: Answer,
    step: StepSpec,
    headers: Mapping[str, str],
    url: URL,
    on_event: EventFn | None = None,
    quiet: float | None = None,
) -> Reply:
    """Read events until `done_event` (its data is the body) or `error_event`; with only an
    `image_event`, to the end of the stream (or `data: [DONE]`), the last image event's data
    being the body. Partial and image events go to `on_event` as they arrive."""
    spec = step.stream
    assert spec is not None
    seen: list[str] = []
    last_image: Any = None
    try:
        async for event in iter_events(resp.content, MAX_BODY, quiet):
            seen.append(event.event)
            if event.event == spec.done_event:
                body = _parse_body(event.data.encode(), 200, "json")
                return Reply(resp.status, headers, body, url)
            if spec.error_event and event.event == spec.error_event:
                body = _sse_error_body(event.data)
                return Reply(resp.status, headers, body, url, error_event=True)
            if event.data.strip() == "[DONE]":
                break
            if event.event in (spec.image_event, spec.partial_event):
                data = _parse_body(event.data.encode(), 200, "json")
                if isinstance(data, MalformedBody):
                    raise UpstreamFailure(
                        "upstream", f"malformed '{event.event}' event data: {data[:200]!r}"
                    )
                if event.event == spec.image_event:
                    last_image = data
                if on_event is not None:
                    on_event(event.event, data)
    except LineTooLong as exc:
        raise UpstreamFailure("upstream", f"{exc} (the limit of an upstream answer)") from None
    if spec.done_event is None:
        return Reply(resp.status, headers, last_image, url)
    raise UpstreamFailure(
        "upstream",
        f"event stream ended without '{spec.done_event}'"
        f" (saw: {', '.join(seen[-5:]) or 'nothing'})",
    )


def _sse_error_body(data: str) -> Any:
    """An error event's data as the step's body: a JSON object that carries an `error` object
    stays as it is (provider `errors` rules can read its code), anything else becomes
    `{"error": {"message": ...}}`."""
    try:
        value = orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("error"), dict):
        return value
    return {"error": {"message": _sse_error_message(data)}}


def _sse_error_message(data: str) -> str:
    try:
        value = orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        value = data
    if value is None:
        return "no details given (the upstream hides its errors)"
    if isinstance(value, dict):
        return str(value.get("message") or value.get("error") or value)
    return str(value)
