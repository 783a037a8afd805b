"""create_app(settings) -> the aiohttp Application."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import signal
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from .api import (
    admin,
    bounds,
    catalog,
    chat,
    cors,
    files,
    gallery,
    health,
    images,
    jobevents,
    metrics,
    responses,
    usage,
)
from .api import jobs as image_jobs
from .api.clientnoise import quiet_aiohttp
from .api.context import GATEWAY, Gateway
from .api.errors import ApiError
from .api.jobresume import canceller, recoverer
from .api.keys import ADMISSION, LIMITS, METRICS, RELOADER, SETTINGS, STATE
from .api.metering import METER
from .api.middleware import request_context
from .api.protocolerrors import json_protocol_errors
from .clients.admission import Admission
from .config.loader import ConfigSnapshot, build_snapshot
from .demo.upstream import create_demo_app
from .jobs.config import JobConfig
from .jobs.keeper import Keeper
from .jobs.webhooks import Webhooks
from .metrics import GatewayMetrics
from .panel import routes as panel
from .panel.keys import RECENT, SESSIONS
from .runtime.calls.clientlimits import client_limits
from .runtime.calls.wire import WireClient
from .runtime.images.fetch import make_guarded_session
from .runtime.lifecycle.bodygate import BodyGate
from .runtime.lifecycle.overload import Limits
from .runtime.lifecycle.reload import Reloader
from .runtime.lifecycle.state import GatewayState
from .runtime.routing.keys import KeyPools
from .runtime.service import ImageService
from .settings import Settings
from .state import MemoryState, StateConfigError, build_state, key_ids, redis_config
from .storage.hub import StorageHub
from .usage.meter import Meter
from .usage.persist import UsageFile

log = logging.getLogger("pixgate")
SERVER_NAME = "pixgate"
# `Server: pixgate` on every response, not aiohttp's default with the Python and aiohttp
# versions: the module default is what aiohttp prepares every response with (those it makes
# before any handler runs too), so no response signal is needed for it.
aiohttp.web_response.SERVER_SOFTWARE = SERVER_NAME  # type: ignore[attr-defined]
INTERNAL_HEADER = "x-pixgate-internal"


class ConfigError(Exception):
    """The config directory does not build; `diagnostics` holds the formatted lines."""

    def __init__(self, diagnostics: list[str]) -> None:
        super().__init__("\n".join(diagnostics))
        self.diagnostics = diagnostics


def load_config(settings: Settings) -> ConfigSnapshot:
    """Build the config, logging its warnings once (the keyless ones as one line)."""
    result = build_snapshot(settings.config_dir, settings.env)
    if result.snapshot is None:
        raise ConfigError([d.format() for d in result.diagnostics.sorted()])
    for line in result.snapshot.warning_lines():
        log.warning("config: %s", line)
    return result.snapshot


def create_app(settings: Settings, snapshot: ConfigSnapshot | None = None) -> web.Application:
    snapshot = snapshot or load_config(settings)
    quiet_aiohttp()
    app = web.Application(client_max_size=settings.max_body)
    keys = KeyPools()
    state = GatewayState(
        snapshot=snapshot,
        storage=StorageHub(snapshot.storage, settings.storage_dir),
        body_gate=BodyGate(settings.max_large_bodies),
        keys=keys,
        backend=build_state(settings.env, snapshot.routes.state, MemoryState(keys)),
    )
    app[STATE] = state
    app[SETTINGS] = settings
    app[METRICS] = GatewayMetrics()
    state.storage.on_event = app[METRICS].storage_event
    app[LIMITS] = Limits(settings.max_in_flight, settings.max_buffered, settings.overload_wait)
    bounds.publish(app[LIMITS], app[METRICS])
    app.on_response_prepare.append(cors.on_prepare)
    app[ADMISSION] = _admission(settings, snapshot)
    app[METER] = Meter(state.shared, app[METRICS])
    app[RELOADER] = Reloader(
        state, settings.config_dir, settings.env, polling=settings.watch_polling
    )
    app.cleanup_ctx.append(_shared_state)
    app.cleanup_ctx.append(_live_gauges)
    app.on_shutdown.append(_draining)
    app.cleanup_ctx.append(_http_session)
    app.cleanup_ctx.append(_storage)
    app.cleanup_ctx.append(_hot_reload)
    if settings.metrics_listen is None:
        app.router.add_get("/metrics", metrics.metrics)
    else:
        app.cleanup_ctx.append(_metrics_listener)
    app.router.add_get("/", catalog.index)
    app.router.add_get("/health", catalog.health)
    app.router.add_get("/health/live", health.live)
    app.router.add_get("/health/ready", health.ready)
    app.router.add_get("/v1/models", catalog.list_models)
    app.router.add_get("/v1/models/{model:.+}", catalog.retrieve_model)
    app.router.add_post("/v1/images/generations", images.generations)
    app.router.add_post("/v1/images/edits", images.edits)
    app.router.add_post("/v1/images/variations", images.variations)
    app.router.add_post("/v1/images/blend", images.blend)
    image_jobs.install(app)
    app.router.add_get("/v1/images/jobs/{id}/events", jobevents.job_events)
    app.router.add_post("/v1/chat/completions", chat.completions)
    app.router.add_post("/v1/responses", responses.create)
    app.router.add_get("/files/{name}", files.files)
    app.router.add_get("/admin/keys", admin.keys)
    app.router.add_post("/admin/keys/reprobe", admin.reprobe)
    app.router.add_get("/admin/health", catalog.health_details)
    app.router.add_get("/admin/config", admin.config)
    app.router.add_post("/admin/reload", admin.reload)
    app.router.add_get("/admin/usage", usage.usage)
    panel.install(app)
    gallery.add_routes(app)
    gateway = app[GATEWAY] = Gateway(
        state,
        settings,
        app[METRICS],
        app[LIMITS],
        app[ADMISSION],
        app[METER],
        app.get(RECENT),
        app.get(SESSIONS),
    )
    app.add_subapp("/_demo", create_demo_app(guard=_demo_switch(state)))
    # An unparseable request gets an OpenAI error, not plain text; every other goes through
    # the gateway's handler (request id, CORS preflight, auth and bounds in turn, access log)
    # around the app's routing. The app and its sub-apps have no middleware: aiohttp runs
    # them without its middleware chain.
    json_protocol_errors(app, functools.partial(request_context, gateway, app.router))
    return app


def _admission(settings: Settings, snapshot: ConfigSnapshot) -> Admission:
    """Client limits count in the same Redis as the shared state, when there is one."""
    try:
        config = redis_config(settings.env, snapshot.routes.state)
    except (StateConfigError, ValueError):
        config = None  # `serve` refused this already; an app built by hand counts in memory
    return Admission(config.url, config.prefix) if config else Admission()


def _demo_switch(state: GatewayState) -> Callable[[web.Request], web.Response | None]:
    """The demo upstream answers only the gateway's own calls (it is no way around client
    keys), and only while the live config says `demo: true` (else this answers instead)."""

    def switch(request: web.Request) -> web.Response | None:
        if not state.snapshot.routes.demo:
            return ApiError(
                404, "the demo upstream is turned off (routes.yaml: demo: false)", code="not_found"
            ).response()
        token = request.headers.get(INTERNAL_HEADER, "")
        if not hmac.compare_digest(token.encode(), state.internal_token.encode()):
            return ApiError(
                403,
                "the demo upstream answers only the gateway itself: ask for model 'demo' at "
                "/v1/images/generations",
                code="forbidden",
            ).response()
        return None

    return switch


async def _http_session(app: web.Application) -> AsyncIterator[None]:
    """One shared ClientSession for every upstream call, with bounded connections."""
    state = app[STATE]
    settings = app[SETTINGS]
    connector = aiohttp.TCPConnector(
        limit=settings.upstream_connections,
        limit_per_host=settings.upstream_connections_per_host,
        ttl_dns_cache=300,
    )
    session = aiohttp.ClientSession(
        connector=connector,
        auto_decompress=True,
        **client_limits(),
        headers={"User-Agent": "pixgate"},
        # Stateless towards providers: a cookie one answer sets (a bot check, an affinity
        # cookie) must not ride along with another client's request or another key.
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    fetch_session = make_guarded_session(app[SETTINGS].fetch_policy)
    client = WireClient(settings.upstream_connections, settings.upstream_connections_per_host)
    state.start(
        ImageService(
            session=session,
            client=client,
            storage=state.storage,
            router=state.router,
            state=state.shared,
            fetch_session=fetch_session,
            fetch_policy=app[SETTINGS].fetch_policy,
            poll_scale=app[SETTINGS].poll_scale,
            internal_headers={INTERNAL_HEADER: state.internal_token},
            metrics=app[METRICS],
            key_ids=key_ids(state.shared),
        ),
        fetch_session,
    )
    try:
        yield
    finally:
        await client.close()
        await session.close()
        await fetch_session.close()


async def _live_gauges(app: web.Application) -> AsyncIterator[None]:
    """With --workers, this worker's live gauges (and counts of work that ended without a
    request) go to the shared files each second."""
    metrics = app[METRICS]
    task = asyncio.create_task(metrics.refreshing()) if metrics.shared else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _draining(app: web.Application) -> None:
    """SIGTERM: the listeners are closed; in-flight requests (polling jobs too) get up to
    PIXGATE_SHUTDOWN_GRACE to finish, then cleanup gives back leases (_shared_state)."""
    app[STATE].draining = True
    log.info(
        "shutting down: finishing in-flight requests (grace %gs)", app[SETTINGS].shutdown_grace
    )


async def _shared_state(app: web.Application) -> AsyncIterator[None]:
    """Connect the state backend; at the end give back the leases this process holds."""
    backend = app[STATE].shared
    await backend.start()
    manager = image_jobs.JobManager(backend, JobConfig.from_env(app[SETTINGS].env))
    app[image_jobs.JOBS] = manager
    webhooks = Webhooks(app, manager)
    manager.on_finished = webhooks.on_finished
    # Without Redis, usage and budget totals live in memory and a file keeps them.
    memory = backend if isinstance(backend, MemoryState) else None
    saved = UsageFile(memory, app[SETTINGS].usage_path) if memory is not None else None
    if saved is not None:
        await saved.start()
    manager.recover = recoverer(app)
    manager.cancel_upstream = canceller(app)
    keeper = Keeper(manager)  # leases of the jobs run here; adopts jobs of dead replicas
    keeper.start()
    try:
        yield
    finally:
        await keeper.close()
        await manager.close()
        await webhooks.close()
        await app[METER].close()
        if saved is not None:
            await saved.close()
        await backend.close()


async def _hot_reload(app: web.Application) -> AsyncIterator[None]:
    """Watch the config (unless --no-watch) and reload on SIGHUP."""
    reloader = app[RELOADER]
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[object]] = set()

    def on_hup() -> None:
        task = asyncio.ensure_future(reloader.reload("SIGHUP"))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    watcher = asyncio.create_task(reloader.watch()) if app[SETTINGS].watch else None
    try:
        yield
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGHUP)
        if watcher is not None:
            reloader.stop()
            try:
                await asyncio.wait_for(watcher, timeout=5)
            except TimeoutError:
                log.warning("config watcher did not stop in time")


async def _storage(app: web.Application) -> AsyncIterator[None]:
    """Check the store once (serve starts either way), then re-upload fallbacks and sweep
    expired images in the background."""
    storage = app[STATE].storage
    await storage.startup_check()
    task = asyncio.create_task(storage.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await storage.close()


async def _metrics_listener(app: web.Application) -> AsyncIterator[None]:
    """PIXGATE_METRICS_LISTEN: /metrics on an address of its own (and not on the API port)."""
    host, port = app[SETTINGS].metrics_listen or ("127.0.0.1", 0)
    side = web.Application()
    side[STATE], side[SETTINGS] = app[STATE], app[SETTINGS]
    side[METRICS], side[RELOADER] = app[METRICS], app[RELOADER]
    side.router.add_get("/metrics", metrics.metrics)
    runner = web.AppRunner(side, access_log=None, handle_signals=False)
    await runner.setup()
    # Workers share the address like the API port; any of them answers with the fleet's sum.
    await web.TCPSite(runner, host, port, reuse_port=True).start()
    try:
        yield
    finally:
        await runner.cleanup()
