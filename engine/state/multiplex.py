"""One Redis connection that every request's per-attempt calls share, pipelined.

Redis answers a connection's commands in the order they came, so concurrent calls need not
each borrow a connection from a pool: a call writes its command at once and waits for its
answer, and one reader task hands the answers out in order. Against redis-py's pooled client
this saves most of a call's CPU in the gateway (no pool checkout, no timeout or retry
wrapper per call: the caller's own timeout bounds the wait; bench/state_cost.py), and
concurrent requests share writes and reads.

redis-py still makes the connection (every URL form, TLS, AUTH, SELECT) and reads the answers
(with hiredis). An answer whose caller gave up (a timeout) is dropped when it comes. A
connection error fails every call still waiting, and the next call connects anew.
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


class _Waiting:
    __slots__ = ("answers", "count", "future")

    def __init__(self, future: asyncio.Future[list[Any]], count: int) -> None:
        self.future = future
        self.count = count
        self.answers: list[Any] = []


class Multiplexed:
    def __init__(self, pool: aioredis.ConnectionPool) -> None:
        self.pool = pool
        self._conn: Any = None  # a redis-py Connection of the pool's class, once connected
        self._reader: asyncio.Task[None] | None = None
        self._waiting: deque[_Waiting] = deque()
        self._connecting: asyncio.Lock | None = None

    async def call(self, *command: Arg) -> Any:
        return (await self.batch((command,)))[0]

    async def script(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int]
    ) -> Any:
        """EVALSHA, and EVAL when Redis lost the script (a restart or SCRIPT FLUSH)."""
        try:
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.call("EVAL", script.script, len(keys), *keys, *args)

    async def batch(self, commands: Sequence[Command]) -> list[Any]:
        """The answers, in order, of commands written together; an error answer raises (the
        first one), once all have come."""
        conn = self._conn if self._conn is not None else await self._connect()
        waiting = _Waiting(asyncio.get_running_loop().create_future(), len(commands))
        self._waiting.append(waiting)
        try:
            if not conn.is_connected:  # closed under us: never let redis-py reconnect it here
                raise ConnectionError("connection closed")
            # Connected, no health check, no socket timeout: written before any await, so
            # the order of the queue is the order on the wire.
            packed = b"".join(hiredis.pack_command(c) for c in commands)  # type: ignore[arg-type]
            await conn.send_packed_command(packed, check_health=False)
        except BaseException as exc:
            waiting.future.cancel()
            self._drop(conn, exc)
            raise
        answers = await waiting.future
        for answer in answers:
            if isinstance(answer, ResponseError):
                raise answer
        return answers

    async def _connect(self) -> Any:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is None:
                kwargs = {**self.pool.connection_kwargs, "socket_timeout": None}
                conn: Any = self.pool.connection_class(**kwargs)
                try:
                    await conn.connect()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await conn.disconnect(nowait=True)
                    raise
                self._conn = conn
                self._reader = asyncio.create_task(self._read(conn))
            return self._conn

    async def _read(self, conn: Any) -> None:
        try:
            while True:
                try:
                    answer = await conn.read_response()
                except ResponseError as exc:  # an error answer, not a broken connection
                    answer = exc
                waiting = self._waiting[0]  # IndexError: an answer no call waits for
                waiting.answers.append(answer)
                if len(waiting.answers) == waiting.count:
                    self._waiting.popleft()
                    if not waiting.future.done():
                        waiting.future.set_result(waiting.answers)
        except Exception as exc:  # lost (redis-py closed the connection), or out of step
            self._drop(conn, exc)
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)

    def _drop(self, conn: Any, exc: BaseException | None) -> None:
        """Fail every waiting call of `conn` and forget it: the next call connects anew."""
        if conn is not self._conn:
            return
        self._conn = None
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()  # redis-py closes the connection when its read is cancelled
        waiting, self._waiting = self._waiting, deque()
        for item in waiting:
            if not item.future.done():
                item.future.set_exception(ConnectionError(f"connection dropped ({exc!r})"))

    def reset(self) -> None:
        """Drop the connection (Redis stopped answering): calls waiting on it fail now."""
        self._drop(self._conn, None)

    async def close(self) -> None:
        reader = self._reader
        self.reset()
        if reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await reader
