"""One Redis connection that every request's per-attempt calls share, pipelined.

Redis answers a connection's commands in the order they came, so concurrent calls need not
each borrow a connection from a pool: a call writes its command at once and waits for its
answer, and one reader task hands the answers out in order. Against redis-py's pooled client
this saves most of a call's CPU in the gateway (bench/state_cost.py), and concurrent requests
share writes and reads.

redis-py makes the connection (every URL form, TLS, AUTH, SELECT, the protocol version);
then this module writes on its stream and reads from it with its own hiredis reader, set up
as redis-py's (the same error classes and decoding): a call is one write and no coroutine of
redis-py's, and one read hands out every answer that came in it.

Every wait is bounded by `timeout`, for all calls at once: answers come in order, so when the
oldest call waits longer than that, the connection is stuck and every call waiting on it
fails with TimeoutError (one timer for the connection, not one per call). An answer whose
caller gave up is dropped when it comes. A connection error fails every call still waiting,
and the next call connects anew.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError, NoScriptError, ResponseError

Arg = str | int | float | bytes | memoryview
Command = tuple[Arg, ...]
READ_SIZE = 65536
INCOMPLETE = object()  # hiredis: no whole answer buffered yet (False is a RESP3 answer)


class _Waiting:
    __slots__ = ("answers", "count", "deadline", "future")

    def __init__(self, future: asyncio.Future[list[Any]], count: int, deadline: float) -> None:
        self.future = future
        self.count = count
        self.deadline = deadline
        self.answers: list[Any] = []


class Multiplexed:
    def __init__(self, pool: aioredis.ConnectionPool, timeout: float = 30.0) -> None:
        self.pool = pool
        self.timeout = timeout
        self._conn: Any = None  # a redis-py Connection of the pool's class, once connected
        self._writer: asyncio.StreamWriter | None = None  # its stream
        self._reader: asyncio.Task[None] | None = None
        self._waiting: deque[_Waiting] = deque()
        self._connecting: asyncio.Lock | None = None
        self._watch: asyncio.TimerHandle | None = None  # the oldest call's deadline

    async def call(self, *command: Arg) -> Any:
        return (await self.batch((command,)))[0]

    async def script(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int]
    ) -> Any:
        """EVALSHA, and EVAL when Redis lost the script (a restart or SCRIPT FLUSH)."""
        try:
            return (await self.batch((("EVALSHA", script.sha, len(keys), *keys, *args),)))[0]
        except NoScriptError:
            return await self.call("EVAL", script.script, len(keys), *keys, *args)

    async def batch(self, commands: Sequence[Command]) -> list[Any]:
        """The answers, in order, of commands written together; an error answer raises (the
        first one), once all have come."""
        if self._conn is None:
            await self._connect()
        writer = self._writer
        if writer is None or writer.transport.is_closing():
            self._drop(self._conn, None)  # closed under us: the next call connects anew
            raise ConnectionError("connection closed")
        loop = asyncio.get_running_loop()
        waiting = _Waiting(loop.create_future(), len(commands), loop.time() + self.timeout)
        # Written before any await, so the order of the queue is the order on the wire.
        writer.write(b"".join(hiredis.pack_command(c) for c in commands))  # type: ignore[arg-type]
        self._waiting.append(waiting)
        if self._watch is None:
            self._watch = loop.call_at(waiting.deadline, self._check)
        answers = await waiting.future
        for answer in answers:
            if isinstance(answer, ResponseError):
                raise answer
        return answers

    def _check(self) -> None:
        """The oldest call's deadline passed: fail all when it still waits, else look again
        at the next one's."""
        self._watch = None
        if not self._waiting:
            return
        head = self._waiting[0]
        loop = asyncio.get_running_loop()
        if loop.time() >= head.deadline:
            self._drop(self._conn, TimeoutError(f"no answer from Redis within {self.timeout} s"))
        else:
            self._watch = loop.call_at(head.deadline, self._check)

    async def _connect(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with asyncio.timeout(self.timeout), self._connecting:
            if self._conn is not None:
                return
            kwargs = {**self.pool.connection_kwargs, "socket_timeout": None}
            conn: Any = self.pool.connection_class(**kwargs)
            try:
                await conn.connect()  # and the handshake, through redis-py's own parser
            except BaseException:
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
                raise
            encoder = conn.encoder
            options: dict[str, Any] = {
                "protocolError": ConnectionError,
                "replyError": conn._parser.parse_error,  # redis-py's error classes
                "notEnoughData": INCOMPLETE,
            }
            if encoder.decode_responses:
                options.update(encoding=encoder.encoding, errors=encoder.encoding_errors)
            self._conn, self._writer = conn, conn._writer
            self._reader = asyncio.create_task(
                self._read(conn, conn._reader, hiredis.Reader(**options))
            )

    async def _read(self, conn: Any, stream: asyncio.StreamReader, parser: Any) -> None:
        try:
            while True:
                data = await stream.read(READ_SIZE)
                if not data:
                    raise ConnectionError("Redis closed the connection")
                parser.feed(data)
                while (answer := parser.gets()) is not INCOMPLETE:
                    if isinstance(answer, ConnectionError):  # the protocol is out of step
                        raise answer
                    waiting = self._waiting[0]  # IndexError: an answer no call waits for
                    waiting.answers.append(answer)
                    if len(waiting.answers) == waiting.count:
                        self._waiting.popleft()
                        if not waiting.future.done():
                            waiting.future.set_result(waiting.answers)
        except Exception as exc:  # lost, or out of step
            self._drop(conn, exc)

    def _drop(self, conn: Any, exc: BaseException | None) -> None:
        """Fail every waiting call of `conn`, close it and forget it: the next call connects
        anew. A timeout fails them with TimeoutError, anything else with ConnectionError."""
        if conn is None or conn is not self._conn:
            return
        self._conn, self._writer = None, None
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        with contextlib.suppress(Exception):
            conn._writer.close()  # the connection object is not used again
        waiting, self._waiting = self._waiting, deque()
        for item in waiting:
            if not item.future.done():
                error: BaseException = (
                    exc if isinstance(exc, TimeoutError)
                    else ConnectionError(f"connection dropped ({exc!r})")
                )  # fmt: skip
                item.future.set_exception(error)

    def reset(self) -> None:
        """Drop the connection (Redis stopped answering): calls waiting on it fail now."""
        self._drop(self._conn, None)

    async def close(self) -> None:
        reader = self._reader
        self.reset()
        if reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await reader
