"""The one storage object the runtime holds: the live backend for the live config, uploads
with bounded retries, the local fallback with background re-upload, sweeping and health.

Degrade, never lose: an image the S3 store would not take is kept on local disk, served from
there under the same id, and uploaded again in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import ByteRange, Meta, Opened, Storage, StorageError, is_name, new_name
from .config import StorageConfig
from .local import LocalStorage, mime_of

log = logging.getLogger("pixgate.storage")
BACKOFF_BASE = 0.2
BACKOFF_CAP = 2.0
CHECK_TIMEOUT = 10.0
SWEEP_EVERY = 3600.0


@dataclass(slots=True)
class StorageStats:
    uploads: int = 0
    upload_retries: int = 0
    fallbacks: int = 0  # images kept on local disk because the store failed
    reuploads: int = 0  # of those, uploaded later
    last_error: str | None = None
    last_error_at: float | None = None


class StorageHub:
    def __init__(self, config: StorageConfig, directory: str | Path) -> None:
        self.local = LocalStorage(directory)
        self.config = config
        self.backend: Storage = self._build(config)
        self.stats = StorageStats()
        self.degraded = False
        self.rng = random.Random()
        self._retired: set[asyncio.Task[None]] = set()
        # The app points this at its metrics: counters there are summed over --workers,
        # where `stats` (for /admin/storage) is only the answering process's.
        self.on_event: Callable[[str], None] = _ignore

    def _build(self, config: StorageConfig) -> Storage:
        if config.backend == "s3":
            from .s3 import S3Storage

            return S3Storage(config)
        self.local.public_base = config.public_base_url if config.url_mode == "public" else None
        return self.local

    @property
    def remote(self) -> bool:
        return self.backend is not self.local

    @property
    def direct_urls(self) -> bool:
        """Objects get URLs clients fetch from the store itself (public or presigned)."""
        return self.config.url_mode != "proxy"

    def use(self, config: StorageConfig) -> None:
        """Follow a reloaded config: a changed section gets a new backend; the old one is
        closed once requests that hold it are likely done."""
        if config == self.config:
            return
        old, self.backend, self.config = self.backend, self._build(config), config
        self.degraded = False
        log.info("storage: now %s", config.location)
        if old is not self.local:
            task = asyncio.get_running_loop().create_task(_close_later(old))
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)

    # -- writing ----------------------------------------------------------------------------

    async def store(self, data: bytes, mime: str, meta: Meta, public_url: str) -> str:
        """Keep an image; returns the URL a client should use for it."""
        cfg = self.config
        if len(data) > cfg.max_object_bytes:
            raise StorageError(
                f"the image is larger than max_object_bytes ({cfg.max_object_bytes})"
            )
        name = new_name(mime)
        meta = {**meta, "created": int(time.time()), "bytes": len(data), "mime": mime}
        if not self.remote:
            await self.local.put(name, data, mime, meta)
            return await self.url_for(name, public_url)
        backend = self.backend
        for attempt in range(1, cfg.upload_attempts + 1):
            try:
                await backend.put(name, data, mime, meta)
                self._count("upload")
                self.degraded = False
                return await self.url_for(name, public_url)
            except Exception as exc:  # whatever the store did, the image must not be lost
                self._failed(_cause(exc))
                if attempt < cfg.upload_attempts:
                    self._count("retry")
                    await asyncio.sleep(self._backoff(attempt))
        await self.local.put(name, data, mime, {**meta, "pending_upload": True})
        self._count("local_fallback")
        log.warning(
            "storage: %s kept on local disk after %d failed uploads (%s); served from this "
            "replica and uploaded again in the background",
            name, cfg.upload_attempts, self.stats.last_error,
        )  # fmt: skip
        return f"{public_url}/files/{name}"

    def _count(self, event: str) -> None:
        stats = self.stats
        if event == "upload":
            stats.uploads += 1
        elif event == "retry":
            stats.upload_retries += 1
        elif event == "local_fallback":
            stats.fallbacks += 1
        else:
            stats.reuploads += 1
        self.on_event(event)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter."""
        return self.rng.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))

    def _failed(self, message: str) -> None:
        self.stats.last_error = message
        self.stats.last_error_at = time.time()
        self.degraded = True

    async def url_for(self, name: str, public_url: str) -> str:
        direct = (
            None if self.local.has(name) and self.remote else await self.backend.direct_url(name)
        )
        return direct or f"{public_url}/files/{name}"

    # -- reading ----------------------------------------------------------------------------

    def _holder(self, name: str) -> Storage:
        """A fallback copy on this replica wins: the store may not have it yet."""
        return self.local if self.remote and self.local.has(name) else self.backend

    async def open(
        self, name: str, byte_range: ByteRange | None = None, if_none_match: str | None = None
    ) -> Opened | None:
        if not is_name(name):
            return None
        return await self._holder(name).open(name, byte_range, if_none_match)

    async def redirect(self, name: str) -> str | None:
        """Where /files sends a client instead of streaming (public or presigned mode)."""
        if not is_name(name) or self._holder(name) is self.local:
            return None
        return await self.backend.direct_url(name)

    async def read(self, name: str, limit: int) -> bytes | None:
        if not is_name(name):
            return None
        return await self._holder(name).read(name, limit)

    # -- the gallery ------------------------------------------------------------------------

    async def meta(self, name: str) -> Meta | None:
        if not is_name(name):
            return None
        return await self._holder(name).meta(name)

    async def page(self, cursor: str | None, limit: int) -> tuple[list[Meta], str | None]:
        return await self.backend.page(cursor, limit)

    async def delete(self, names: list[str]) -> list[str]:
        names = [n for n in names if is_name(n)]
        gone = set(await self.local.delete(names)) if self.remote else set()
        gone |= set(await self.backend.delete(names))
        return [n for n in names if n in gone]

    # -- background -------------------------------------------------------------------------

    async def startup_check(self) -> None:
        """Serve starts whatever the store says; a failure is logged once, clearly."""
        if not self.remote:
            return
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await self.backend.check()
        except (StorageError, TimeoutError) as exc:
            message = str(exc) or f"no answer within {CHECK_TIMEOUT:g}s"
            self._failed(message)
            log.error(
                "storage: %s is not usable: %s. Serving anyway: b64_json works, url results "
                "are kept on local disk until the store is back",
                self.config.location, message,
            )  # fmt: skip

    async def reupload_once(self) -> int:
        """Upload images kept locally after a failure; returns how many went up."""
        if not self.remote:
            return 0
        names = await asyncio.to_thread(self.local.names)
        done = 0
        for name in sorted(names, reverse=True):  # oldest first
            meta = await self.local.meta(name)
            if meta is None or not meta.get("pending_upload"):
                continue
            data = await self.local.read(name, self.config.max_object_bytes)
            if data is None:
                continue
            clean = {k: v for k, v in meta.items() if k not in ("pending_upload", "id")}
            try:
                await self.backend.put(name, data, str(meta.get("mime") or mime_of(name)), clean)
            except Exception as exc:
                self._failed(_cause(exc))
                return done
            await self.local.delete([name])
            self._count("reupload")
            done += 1
        if done:
            log.info("storage: uploaded %d image(s) kept locally after a failure", done)
        self.degraded = False if done or not self.stats.last_error else self.degraded
        return done

    async def sweep(self) -> int:
        cfg = self.config
        if cfg.ttl is None or not cfg.sweep:
            return 0
        if not self.remote:
            return await self.local.sweep(cfg.ttl)
        try:
            return await self.backend.sweep(cfg.ttl)
        except StorageError as exc:
            log.warning("storage: sweep failed: %s", exc)
            return 0

    async def run(self) -> None:
        """Re-upload and sweep forever (cancelled at shutdown)."""
        last_sweep = 0.0
        while True:
            with contextlib.suppress(Exception):
                if self.remote and (self.degraded or self.stats.fallbacks > self.stats.reuploads):
                    await self._probe_and_reupload()
            if time.monotonic() - last_sweep >= SWEEP_EVERY:
                last_sweep = time.monotonic()
                try:
                    removed = await self.sweep()
                    if removed:
                        log.info("storage: removed %d expired images", removed)
                except Exception:
                    log.exception("storage: sweep failed")
            await asyncio.sleep(self.config.retry_every)

    async def _probe_and_reupload(self) -> None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await self.backend.check()
        except (StorageError, TimeoutError) as exc:
            self._failed(str(exc) or "no answer")
            return
        self.degraded = False
        await self.reupload_once()

    def status(self) -> dict[str, Any]:
        """For /health and admin output: never credentials (the config holds none)."""
        return {
            "backend": self.config.backend,
            "location": self.config.location,
            "url_mode": self.config.url_mode,
            "status": "degraded" if self.degraded else "ok",
            "uploads": self.stats.uploads,
            "upload_retries": self.stats.upload_retries,
            "local_fallbacks": self.stats.fallbacks,
            "reuploads": self.stats.reuploads,
            "last_error": self.stats.last_error,
            "last_error_at": self.stats.last_error_at,
        }

    async def close(self) -> None:
        if self.remote:
            await self.backend.close()


def _cause(exc: Exception) -> str:
    """StorageError messages are written for people; anything else is named by class only
    (its text could quote a request)."""
    return str(exc) if isinstance(exc, StorageError) else f"storage error ({type(exc).__name__})"


async def _close_later(backend: Storage, delay: float = 60.0) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(delay)
    await backend.close()


def _ignore(event: str) -> None:
    pass
