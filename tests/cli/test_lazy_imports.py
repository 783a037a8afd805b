"""An idle gateway does not load what only some configs or requests need (issue 19's idle
RSS): Pillow (input image rules, the demo renderer, thumbnails, stream image headers),
`limits` (counted client limits) and the dry-run tools (the panel's explain) come in on first
use."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

from engine.panel.thumbs import render
from tests.gateway import REPO

LAZY = ("PIL", "limits", "engine.tools.explain")

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    import aiohttp
    from tests.gateway import REPO, run_gateway

    async def main() -> None:
        async with run_gateway(REPO, Path(sys.argv[1])) as gw:
            async with aiohttp.ClientSession() as http, http.get(gw.url + "/health") as resp:
                assert resp.status == 200, resp.status
        print(" ".join(sorted(name for name in sys.argv[2:] if name in sys.modules)))

    asyncio.run(main())
    """
)


def test_an_idle_gateway_loads_neither_pillow_nor_limits(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "files"), *LAZY],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == [], out.stdout


def test_the_thumbnail_of_a_decompression_bomb_is_a_value_error() -> None:
    """The panel answers 415 for OSError and ValueError; Pillow's bomb error is neither."""
    header = struct.pack(">IIBBBBB", 30_000, 30_000, 1, 0, 0, 0, 0)  # 900 Mpx, 1 bit grey
    chunk = b"IHDR" + header
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + chunk
    png += struct.pack(">I", zlib.crc32(chunk)) + b"\0\0\0\0IEND\xaeB`\x82"
    with pytest.raises(ValueError, match="decompression bomb"):
        render(png)
