"""What a client can make the gateway log (issue 12, item 6): a disconnect mid-upload was a
500 with a ConnectionResetError traceback, every malformed request line an ERROR traceback.
Now each is one WARNING/INFO line, rate-limited. Read from a real `pixgate serve` process's
stderr, as an operator would see it."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from engine.api.clientnoise import Limiter
from tests.gateway import REPO, free_port, serve_process, wait_healthy

MALFORMED = [
    b"GET / HTTP/1.1\x00\r\n\r\n",
    b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: \x1b[31mred\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00",
    b"GARBAGE\r\n\r\n",
]
UPLOAD_HEAD = (
    b"POST /v1/images/edits HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
    b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
)
UPLOAD_START = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\nPNG'


async def send(port: int, data: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    async with asyncio.timeout(10):
        await reader.read()
    writer.close()


async def leave_mid_upload(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(UPLOAD_HEAD)
    async with asyncio.timeout(10):
        assert (await reader.readline()).startswith(b"HTTP/1.1 100")  # a handler has it
    writer.write(UPLOAD_START)
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.transport.abort()  # the client leaves mid-upload
    writer.close()


async def attack(port: int) -> None:
    for _ in range(3):
        await leave_mid_upload(port)
    for _ in range(5):
        for line in MALFORMED:
            await send(port, line)


def test_client_caused_errors_are_single_rate_limited_lines(tmp_path: Path) -> None:
    port = free_port()
    proc = serve_process(REPO, port, tmp_path / "files")
    try:
        wait_healthy(port)
        asyncio.run(attack(port))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    log = err.decode(errors="replace")
    assert "Traceback" not in log
    assert " ERROR " not in log
    assert "\x1b" not in log  # a client's escape sequences never reach the terminal
    noise = [line for line in log.splitlines() if " pixgate.client " in line]
    assert 1 <= len(noise) <= Limiter().burst  # 33 events, at most one burst of lines
    assert any("client left mid-request" in line and " INFO " in line for line in noise)
    assert any("malformed request" in line and " WARNING " in line for line in noise)
    assert " status=499 " in log  # the access log says the client went, not a 500


def test_limiter_counts_what_it_left_out() -> None:
    now = [0.0]
    limiter = Limiter(burst=2, window=10, clock=lambda: now[0])
    assert [limiter.allow()[0] for _ in range(5)] == [True, True, False, False, False]
    now[0] = 10
    assert limiter.allow() == (True, 3)
