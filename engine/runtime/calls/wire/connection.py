"""One keep-alive HTTP/1.1 connection to an upstream, one exchange at a time.

The answer is parsed by httptools (llhttp, the parser of Node.js and of aiohttp's own C
parser) and its body fed into an `aiohttp.StreamReader`, so the body readers (bodygate.py,
sse.py) and their flow control work as they did on aiohttp's client: the reader pauses this
transport beyond twice its limit, leaving the rest of a large answer in the socket.

Everything the upstream sends is bounded: the status line and headers together
(`MAX_HEAD`), each header (`MAX_HEADER_LINE`), the number of headers, and inflated data
(inflate.py). Anything after the end of an answer (a second answer nobody asked for, stray
bytes) closes the connection: it never reaches the next exchange."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httptools
from aiohttp import StreamReader
from aiohttp.base_protocol import BaseProtocol
from multidict import CIMultiDict
from yarl import URL

from ...lifecycle.bodygate import READ_BUFFER
from ..clientlimits import MAX_HEADER_LINE
from .inflate import EncodingError, Inflater

if TYPE_CHECKING:
    from .pool import HostPool

MAX_HEAD = 256 * 1024  # status line and headers of one answer
MAX_HEADERS = 128  # as aiohttp's client


class WireError(Exception):
    """The upstream broke the protocol or the connection. The text names no URL."""


class Answer:
    """The head of an upstream answer and its body: `body`, the bytes, when the whole body came
    in the read that brought the head (a small answer, the usual case), else a stream
    (`content`, also made from `body` on demand). `release()` ends the exchange: a connection
    whose answer was read to the end goes back to its pool, any other is closed."""

    __slots__ = (
        "_conn",
        "_content",
        "_protocol",
        "body",
        "content_length",
        "headers",
        "slots",
        "status",
        "url",
    )

    def __init__(self, conn: Connection, status: int, headers: CIMultiDict[str], url: URL) -> None:
        self._conn: Connection | None = conn
        self._protocol = conn
        self.status = status
        self.headers = headers
        self.url = url
        self.body: bytes | None = None
        self._content: StreamReader | None = None
        length = headers.get("Content-Length")
        self.content_length = int(length) if length is not None and length.isdigit() else None
        # the pool's bounds this exchange holds (pool.py), given back by release()
        self.slots: tuple[asyncio.Semaphore | None, ...] = ()

    @property
    def content(self) -> StreamReader:
        reader = self._content
        if reader is None:
            reader = self._content = self._protocol.reader()
            if self.body is not None:
                reader.feed_data(self.body)
                reader.feed_eof()
        return reader

    @property
    def read_to_end(self) -> bool:
        return self.body is not None or (self._content is not None and self._content.at_eof())

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.finish()
        for slots in self.slots:
            if slots is not None:
                slots.release()


class Connection(BaseProtocol):
    __slots__ = (
        "_answer",
        "_body_ended",
        "_closed",
        "_done",
        "_early",
        "_failure",
        "_head_ready",
        "_head_size",
        "_headers",
        "_http",
        "_inflater",
        "_informational",
        "_keep_alive",
        "_until_eof",
        "_url",
        "_waiter",
        "busy",
        "idle_since",
        "pool",
        "received",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: HostPool) -> None:
        super().__init__(loop)
        self.pool = pool
        self._http = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._inflater: Inflater | None = None
        self._informational = False
        self._until_eof = False
        self._failure: str | None = None
        self._closed = False
        self.busy = False
        self.idle_since = 0.0
        self._start(URL())

    def _start(self, url: URL) -> None:
        """The state of one exchange, fresh."""
        self._url = url
        self._answer: Answer | None = None
        self._headers: list[tuple[str, str]] = []
        self._head_size = 0
        self._keep_alive = False  # (the parser forgets it once its message has ended)
        self._done = False  # the current answer ended (its body fed to the reader in full)
        self._body_ended = False  # the parser saw its end (inflated data may still wait)
        # the body that came with the head, kept as bytes until the end of that read
        self._early: list[bytes] | None = None
        self._head_ready = False  # a head parsed in this read, handed over at its end
        self.received = False  # a byte of the current answer arrived

    @property
    def closed(self) -> bool:
        # (the upstream's FIN closes the transport at once; connection_lost comes a turn later)
        transport = self.transport
        return self._closed or transport is None or transport.is_closing()

    # -- the exchange -----------------------------------------------------------------------

    def send(self, request: bytes | list[bytes], url: URL) -> asyncio.Future[Answer]:
        """Write a request; the future gets the answer's head."""
        self.busy = True
        self._start(url)
        waiter = self._waiter = self._loop.create_future()
        transport = self.transport
        if transport is None or self._closed:
            waiter.set_exception(WireError("the upstream closed the connection"))
            return waiter
        if isinstance(request, bytes):
            transport.write(request)
        else:
            transport.writelines(request)
        return waiter

    def finish(self) -> None:
        """The exchange is over: back to the pool if its answer ended on a keep-alive
        connection, closed otherwise."""
        self.busy = False
        self._waiter = None
        answer, self._answer = self._answer, None
        if (
            self._done
            and not self._closed
            and self._failure is None
            and answer is not None
            and answer.read_to_end
            and self._keep_alive
        ):
            self.pool.put(self)
        else:
            self.close()

    def close(self) -> None:
        self._closed = True
        if self.transport is not None:
            self.transport.close()
        self.pool.forget(self)

    # -- asyncio.Protocol -------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not self.busy or self._done:
            self._fail("the upstream sent data after the end of its answer")
            return
        self.received = True
        try:
            self._http.feed_data(data)
        except httptools.HttpParserError as exc:
            reason = self._failure or _parse_error(exc)
            self._failure = None
            self._fail(reason)
            return
        if self._head_ready:
            self._deliver()
        elif self._waiter is not None and not self._waiter.done():
            self._head_size += len(data)
            if self._head_size > MAX_HEAD:
                self._fail(f"the upstream's answer head is longer than {MAX_HEAD} bytes")

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        self._closed = True
        self.pool.forget(self)
        if not self.busy or self._done or self._failure is not None:
            return
        # An answer without a length ends with its connection. One that had ended already is
        # whole: what its inflater holds reaches the reader as it reads (resume_reading).
        if self._body_ended or (self._answer is not None and self._until_eof and exc is None):
            self._body_ended = True
            self._end_body()
            return
        if self._answer is None:
            self._fail("the upstream closed the connection without an answer")
        else:
            self._fail("the upstream closed the connection before the end of its answer")

    def pause_reading(self) -> None:
        # (aiohttp's BaseProtocol would pause its own parser too; httptools has none to pause)
        self._reading_paused = True
        self._pause_transport_reading()

    def resume_reading(self, resume_parser: bool = True) -> None:
        self._reading_paused = False
        if self._inflater is not None and self._inflater.pending:
            self._inflate()
        if not self._reading_paused and not self._closed:
            self._resume_transport_reading()

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._body_ended:  # the start of a second answer: the parser must not keep it
            self._failure = "the upstream sent data after the end of its answer"
            raise WireError(self._failure)
        self._headers = []
        self._informational = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > MAX_HEADER_LINE:
            self._failure = f"an answer header is longer than {MAX_HEADER_LINE} bytes"
            raise WireError(self._failure)
        headers = self._headers
        if len(headers) >= MAX_HEADERS:
            self._failure = f"the upstream sent more than {MAX_HEADERS} headers"
            raise WireError(self._failure)
        headers.append(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        status = self._http.get_status_code()
        if status < 200:
            if status == 101:
                self._failure = "the upstream switched protocols"
                raise WireError(self._failure)
            self._informational = True  # 100 Continue, 103 Early Hints: the answer follows
            return
        if self._waiter is None or self._answer is not None:  # a second answer to one request
            self._failure = "the upstream sent data after the end of its answer"
            raise WireError(self._failure)
        headers = CIMultiDict(self._headers)
        encoding = headers.get("Content-Encoding", "").strip().lower()
        self._inflater = None
        if encoding and encoding != "identity":
            try:
                self._inflater = Inflater(encoding)
            except EncodingError as exc:
                self._failure = str(exc)
                raise WireError(self._failure) from None
        chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        self._until_eof = (
            "Content-Length" not in headers and not chunked and status not in (204, 304)
        )
        answer = self._answer = Answer(self, status, headers, self._url)
        if self._inflater is None and answer.content_length is not None:
            self._early = []  # (a body without a length may be large: bodygate reads it)
        self._head_ready = True

    def on_body(self, body: bytes) -> None:
        if self._informational or self._answer is None:
            return
        early = self._early
        if early is not None:
            early.append(body)
            return
        inflater = self._inflater
        if inflater is None:
            self._answer.content.feed_data(body)
            return
        inflater.feed(body)
        if not self._reading_paused:
            self._inflate()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self._keep_alive = self._http.should_keep_alive()
        self._body_ended = True
        self._end_body()  # (with inflated data still waiting, _inflate ends it later)

    # -- helpers ----------------------------------------------------------------------------

    def reader(self) -> StreamReader:
        return StreamReader(self, READ_BUFFER, loop=self._loop)

    def _deliver(self) -> None:
        """At the end of the read that brought the head: the answer to its waiter, the body
        as bytes if it is all here, else as a stream from now on."""
        self._head_ready = False
        answer = self._answer
        waiter = self._waiter
        assert answer is not None and waiter is not None
        early, self._early = self._early, None
        if early is not None and answer.body is None:
            reader = answer.content
            for chunk in early:
                reader.feed_data(chunk)
        if not waiter.done():
            waiter.set_result(answer)

    def _inflate(self) -> None:
        inflater = self._inflater
        answer = self._answer
        assert inflater is not None and answer is not None
        try:
            while inflater.pending and not self._reading_paused:
                piece = inflater.take()
                if piece:
                    answer.content.feed_data(piece)  # may pause reading: the loop stops
        except EncodingError as exc:
            self._fail(str(exc))
            return
        if self._body_ended and not inflater.pending:
            self._end_body()

    def _end_body(self) -> None:
        answer = self._answer
        if answer is None or self._done:
            return
        early = self._early
        if early is not None:  # all of it came with the head
            self._early = None
            answer.body = early[0] if len(early) == 1 else b"".join(early)
            self._done = True
            return
        if self._inflater is not None:
            if self._inflater.pending:
                return  # the reader has not taken it all yet: _inflate comes back here
            try:
                self._inflater.check_complete()
            except EncodingError as exc:
                self._fail(str(exc))
                return
        self._done = True
        answer.content.feed_eof()

    def _fail(self, reason: str) -> None:
        """End the exchange with `reason` (a waiter or reader sees it) and the connection."""
        error = WireError(reason)
        waiter = self._waiter
        answer = self._answer
        if answer is not None and self._done:
            if self._head_ready:  # a whole answer stands; only the connection goes
                self._deliver()
        elif waiter is not None and not waiter.done():
            waiter.set_exception(error)
        elif answer is not None:
            answer.content.set_exception(error)
        self._failure = reason
        if not self._closed:
            self.close()


def _parse_error(exc: Exception) -> str:
    cause: Any = exc.__context__
    if isinstance(cause, WireError):
        return str(cause)
    text = str(exc).strip() or exc.__class__.__name__
    return f"the upstream's answer is not valid HTTP ({text[:120]})"
