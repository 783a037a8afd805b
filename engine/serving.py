"""Run the app: one process, or N worker processes sharing the port with SO_REUSEPORT."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

from aiohttp import web
from prometheus_client.multiprocess import mark_process_dead

from . import logsetup
from .api.keys import STATE
from .app import create_app
from .config.loader import ConfigSnapshot
from .eventloop import LoopFactory, loop_factory
from .gctune import tune, tune_after_startup
from .metrics import enable_multiprocess
from .settings import Settings

log = logging.getLogger("pixgate")
# Connections the kernel queues before we accept them. aiohttp's default of 128 drops the SYNs
# of a larger burst (1,000 clients at once), and each dropped one waits a 1 s retransmit.
# The kernel caps it at net.core.somaxconn.
BACKLOG = 4096


def serve(settings: Settings, workers: int = 1, snapshot: ConfigSnapshot | None = None) -> int:
    """Run until stopped. `snapshot`: the config the caller built already (and whose warnings
    it logged); workers start from it instead of building and logging it again."""
    factory, name = loop_factory(settings.event_loop)
    log.info("event loop: %s", name)
    if workers <= 1:
        app = create_app(settings, snapshot)
        app.on_startup.append(tune_after_startup)  # after the config is built
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            access_log=None,
            print=None,
            loop=factory(),
            backlog=BACKLOG,
            shutdown_timeout=settings.shutdown_grace,
        )
        return 0
    return _supervise(settings, workers, factory, snapshot)


def _supervise(
    settings: Settings, workers: int, factory: LoopFactory, snapshot: ConfigSnapshot | None
) -> int:
    """Start the workers, pass signals on (TERM/INT stop, HUP reloads), stop all if one dies."""
    ctx = multiprocessing.get_context("fork")
    # Workers write their metrics to one directory and a scrape of any of them sums them.
    metrics_dir = Path(tempfile.mkdtemp(prefix="pixgate-metrics-"))
    enable_multiprocess(metrics_dir)
    try:
        return _run_workers(ctx, settings, workers, factory, snapshot)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _run_workers(
    ctx: multiprocessing.context.ForkContext,
    settings: Settings,
    workers: int,
    factory: LoopFactory,
    snapshot: ConfigSnapshot | None,
) -> int:
    procs = [
        ctx.Process(target=_worker, args=(settings, i, factory, snapshot), name=f"pixgate-{i}")
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if signum != signal.SIGHUP:
            stopping = True
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    log.info("started %d workers: %s", workers, ", ".join(str(p.pid) for p in procs))
    code = 0
    while any(p.is_alive() for p in procs):
        for proc in procs:
            proc.join(timeout=0.5)
            if proc.exitcode is not None and proc.pid is not None:
                mark_process_dead(proc.pid)  # type: ignore[no-untyped-call]  # its live gauges leave the sum
            if proc.exitcode is not None and not stopping:
                log.error("worker %s exited with %s; stopping the others", proc.pid, proc.exitcode)
                code = 1
                forward(signal.SIGTERM, None)
    return code


def _worker(
    settings: Settings, index: int, factory: LoopFactory, snapshot: ConfigSnapshot | None
) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    try:
        with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=factory) as runner:
            runner.run(_run_worker(settings, index, snapshot))
    finally:
        logsetup.flush()  # multiprocessing ends a worker with os._exit: no logging.shutdown
    sys.exit(0)


async def _run_worker(settings: Settings, index: int, snapshot: ConfigSnapshot | None) -> None:
    # Without Redis each worker keeps its own usage totals, so each has its own file.
    usage = settings.usage_path
    settings = dataclasses.replace(settings, usage_file=usage.with_suffix(f".{index}.json"))
    app = create_app(settings, snapshot)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=settings.shutdown_grace
    )
    await runner.setup()
    await web.TCPSite(
        runner, settings.host, settings.port, reuse_port=True, backlog=BACKLOG
    ).start()
    # A private loopback port: the built-in demo upstream keeps its task state per process, so a
    # worker must reach itself, not whichever worker the shared port picks.
    private = web.TCPSite(runner, "127.0.0.1", 0)
    await private.start()
    port = next(a[1] for a in runner.addresses if a[1] not in (settings.port, 0))
    app[STATE].internal_url = f"http://127.0.0.1:{port}"
    tune()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("worker %d (pid %d) serving", index, os.getpid())
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
