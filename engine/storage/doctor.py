"""`pixgate doctor`: is the configured store reachable and writable? One clear cause if not."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from .base import StorageError
from .config import StorageConfig

TIMEOUT = 20.0


async def check_storage(config: StorageConfig, local_dir: Path) -> tuple[bool, str]:
    """(ok, one line for a person). Writes and deletes one small probe object."""
    if config.backend == "local":
        return await asyncio.to_thread(_check_dir, local_dir)
    from .s3 import S3Storage

    store = S3Storage(config)
    try:
        async with asyncio.timeout(TIMEOUT):
            await store.check(write=True)
    except StorageError as exc:
        return False, f"storage {config.location}: {exc}"
    except TimeoutError:
        return False, f"storage {config.location}: no answer within {TIMEOUT:g}s"
    finally:
        await store.close()
    return True, f"storage {config.location}: reachable and writable"


def _check_dir(directory: Path) -> tuple[bool, str]:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".doctor-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return False, f"storage local disk {directory}: not writable ({exc.strerror})"
    return True, f"storage local disk {directory}: writable"
