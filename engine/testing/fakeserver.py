"""A scripted fake upstream: answers the expected exchanges of a golden case, in order (or in any
order), and records every request that does not match as a readable problem.

It listens on 127.0.0.1 at a free port. A request that is unexpected or does not match gets a
599 JSON answer describing the problem, so the gateway fails loudly, and the problem is kept for
the case result. Requests that carry the ``x-pixgate-golden: runner`` header come from the
runner itself (checking result URLs) and are served from the case's ``files``, outside the
exchange script.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.parser
import email.policy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from aiohttp import web

from .cases import Answer, Exchange, Expect
from .images import MIME_TYPES, make_image
from .match import compare, compare_headers, describe, substitute, substitute_text

RUNNER_HEADER = "x-pixgate-golden"
RUNNER_VALUE = "runner"
MISMATCH_STATUS = 599


@dataclass(slots=True)
class RecordedRequest:
    """One request as the fake saw it (path keeps its percent-encoding)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def summary(self) -> str:
        query = "&".join(f"{k}={v}" for k, values in self.query.items() for v in values)
        return f"{self.method} {self.path}" + (f"?{query}" if query else "")

    def describe(self) -> list[str]:
        """A few lines showing what was received, for mismatch messages."""
        lines = [f"got: {self.summary()}"]
        shown = {k: v for k, v in self.headers.items() if k not in _BORING_HEADERS}
        if shown:
            lines.append(f"  headers: {describe(shown, 400)}")
        if self.body:
            try:
                body: Any = json.loads(self.body)
            except ValueError:
                body = self.body[:300].decode("utf-8", errors="replace")
            lines.append(f"  body: {describe(body, 600)}")
        return lines


_BORING_HEADERS = frozenset(
    {"host", "accept", "accept-encoding", "content-length", "user-agent", "connection"}
)


@dataclass(slots=True)
class FakeUpstream:
    """Serve one case's exchanges. `problems` collects every mismatch, in arrival order."""

    exchanges: Sequence[Exchange]
    files: Mapping[str, Answer] = field(default_factory=dict)
    unordered: bool = False
    urls: dict[str, str] = field(default_factory=dict)  # {{name}} substitutions
    problems: list[str] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    used: list[bool] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set at every request

    def __post_init__(self) -> None:
        self.used = [False] * len(self.exchanges)

    @property
    def url(self) -> str:
        return self.urls["upstream"]

    async def start(self) -> str:
        """Listen on 127.0.0.1 at a free port; returns the root URL (no trailing slash)."""
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        self.urls["upstream"] = f"http://{host}:{port}"
        return self.url

    def wake(self) -> None:
        """End every delayed answer now (so whoever waits on them can shut down quickly)."""
        self._closing.set()

    async def close(self) -> None:
        self.wake()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def received(self, count: int) -> None:
        """Return once `count` scripted requests have arrived (the case's timeout bounds it)."""
        while len(self.requests) < count:
            self._arrived.clear()
            await self._arrived.wait()

    def unused(self) -> list[int]:
        return [i for i, used in enumerate(self.used) if not used]

    # -----------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        raw_path = request.raw_path.split("?", 1)[0]
        record = RecordedRequest(
            method=request.method,
            path=raw_path,
            query={k: request.query.getall(k) for k in request.query},
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        if request.headers.get(RUNNER_HEADER) == RUNNER_VALUE:
            return await self._serve_file(request, record)
        self.requests.append(record)
        self._arrived.set()
        number = len(self.requests)
        index, problems = self._pick(record)
        if index is None or problems:
            message = self._mismatch(number, record, index, problems)
            self.problems.append(message)
            return web.json_response(
                {"error": {"message": message, "type": "golden_mismatch", "code": None}},
                status=MISMATCH_STATUS,
            )
        self.used[index] = True
        return await self._answer(request, self.exchanges[index].respond)

    def _pick(self, record: RecordedRequest) -> tuple[int | None, list[str]]:
        """The exchange this request is for, and what does not match in it."""
        free = self.unused()
        if not free:
            return None, []
        if not self.unordered:
            index = free[0]
            problems = self.check(self.exchanges[index].expect, record)
            if problems:
                self.used[index] = True  # spent: the next request is compared with the next one
            return index, problems
        best: tuple[int, list[str]] | None = None
        for index in free:
            problems = self.check(self.exchanges[index].expect, record)
            if not problems:
                return index, []
            if best is None or len(problems) < len(best[1]):
                best = (index, problems)
        assert best is not None
        return best

    def _mismatch(
        self, number: int, record: RecordedRequest, index: int | None, problems: list[str]
    ) -> str:
        if index is None:
            lines = [
                f"upstream request #{number} was not expected "
                f"(all {len(self.exchanges)} expected exchanges were already used)"
            ]
        else:
            closest = " (closest in any order)" if self.unordered else ""
            label = self.exchanges[index].label(index)
            lines = [f"upstream request #{number} does not match {label}{closest}:"]
            lines += [f"  - {p}" for p in problems]
        lines += [f"  {line}" for line in record.describe()]
        return "\n".join(lines)

    def check(self, expect: Expect, got: RecordedRequest) -> list[str]:
        """What differs between an expected request and a received one."""
        problems: list[str] = []
        exp = substitute(
            {
                "path": expect.path,
                "headers": expect.headers,
                "query": expect.query,
                "json": expect.json,
                "multipart": expect.multipart,
                "text": expect.text,
            },
            self.urls,
        )
        if got.method != expect.method:
            problems.append(f"method: expected {expect.method}, got {got.method}")
        compare(exp["path"], got.path, "path", problems, exact=True, text=True)
        compare_headers(exp["headers"], got.headers, "headers", problems)
        if exp["query"] is not None:
            actual = {k: v[0] if len(v) == 1 else v for k, v in got.query.items()}
            compare(exp["query"], actual, "query", problems, exact=True, text=True)
        if expect.has_json:
            try:
                body = json.loads(got.body) if got.body else None
            except ValueError:
                problems.append(f"json: the body is not JSON: {describe(got.body[:200])}")
            else:
                if got.content_type != "application/json":
                    problems.append(
                        f"headers.content-type: expected application/json, "
                        f"got {describe(got.content_type)}"
                    )
                compare(exp["json"], body, "json", problems, exact=True)
        if exp["multipart"] is not None:
            _check_multipart(exp["multipart"], got, problems)
        if exp["text"] is not None:
            text = got.body.decode("utf-8", errors="replace")
            compare(exp["text"], text, "text", problems, exact=True)
        return problems

    async def _serve_file(
        self, request: web.Request, record: RecordedRequest
    ) -> web.StreamResponse:
        answer = self.files.get(record.path)
        if answer is None:
            message = (
                f"the runner fetched {record.path} from the fake upstream, but the case has no "
                f"`files` entry for it (known: {', '.join(sorted(self.files)) or 'none'})"
            )
            return web.json_response({"error": {"message": message}}, status=404)
        return await self._answer(request, answer)

    async def _answer(self, request: web.Request, answer: Answer) -> web.StreamResponse:
        if answer.delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), answer.delay)
        headers = {k: str(substitute(v, self.urls)) for k, v in answer.headers.items()}
        given_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
        if answer.kind == "sse":
            resp = web.StreamResponse(status=answer.status, headers=headers)
            if given_type is None:
                resp.content_type = "text/event-stream"
            await resp.prepare(request)
            for frame in answer.sse:
                frame = dataclasses.replace(
                    frame,
                    data=substitute(frame.data, self.urls),
                    text=None if frame.text is None else substitute_text(frame.text, self.urls),
                )
                await resp.write(frame.encode().encode("utf-8"))
            await resp.write_eof()
            return resp
        body, content_type = self._body(answer)
        if given_type is None and content_type is not None:
            headers["Content-Type"] = content_type
        return web.Response(status=answer.status, body=body, headers=headers)

    def _body(self, answer: Answer) -> tuple[bytes, str | None]:
        if answer.kind == "json":
            data = json.dumps(substitute(answer.json, self.urls), ensure_ascii=False)
            return data.encode("utf-8"), "application/json"
        if answer.kind == "text":
            text = str(substitute(answer.text or "", self.urls))
            return text.encode("utf-8"), "text/plain; charset=utf-8"
        if answer.kind == "image" and answer.image is not None:
            spec = answer.image
            blob = make_image(spec.width, spec.height, spec.format, spec.color)
            return blob, MIME_TYPES[spec.format]
        return b"", None


def _check_multipart(expected: dict[str, Any], got: RecordedRequest, problems: list[str]) -> None:
    if got.content_type != "multipart/form-data":
        problems.append(
            f"multipart: expected a multipart/form-data body, got {describe(got.content_type)}"
        )
        return
    header = f"Content-Type: {got.headers.get('content-type', '')}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + got.body)
    parts: dict[str, list[Message]] = {}
    for item in message.iter_parts() if message.is_multipart() else []:
        name = item.get_param("name", header="content-disposition")
        parts.setdefault(str(name), []).append(item)
    for name, wanted in expected.items():
        found = parts.get(name)
        if not found:
            problems.append(f"multipart.{name}: expected a part, but it is missing")
            continue
        specs = wanted if isinstance(wanted, list) else [wanted]
        if len(specs) != len(found):
            problems.append(
                f"multipart.{name}: expected {len(specs)} part(s) of that name, got {len(found)}"
            )
            continue
        for index, (spec, part) in enumerate(zip(specs, found, strict=True)):
            label = f"{name}[{index}]" if isinstance(wanted, list) else name
            _check_part(label, spec, part, problems)
    for name in parts:
        if name not in expected:
            problems.append(f"multipart.{name}: not expected, but the part was sent")


def _check_part(name: str, spec: Any, part: Message, problems: list[str]) -> None:
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    if isinstance(spec, str):
        compare(
            spec,
            data.decode("utf-8", errors="replace"),
            f"multipart.{name}",
            problems,
            exact=True,
            text=True,
        )
        return
    if "filename" in spec:
        compare(
            spec["filename"],
            part.get_filename(),
            f"multipart.{name}.filename",
            problems,
            exact=True,
        )
    if "content_type" in spec:
        compare(
            spec["content_type"],
            part.get_content_type(),
            f"multipart.{name}.content_type",
            problems,
            exact=True,
        )
    if "size_min" in spec and len(data) < spec["size_min"]:
        problems.append(
            f"multipart.{name}: expected at least {spec['size_min']} bytes, got {len(data)}"
        )
