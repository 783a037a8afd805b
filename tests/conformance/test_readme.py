"""The README's quick start works as written, for someone who has run set-up command 1 only."""

from __future__ import annotations

import asyncio
import re
import runpy
from pathlib import Path

from PIL import Image

from tests.gateway import REPO, Gateway

README = (REPO / "README.md").read_text(encoding="utf-8")
QUICK_START = README[README.index("## Quick start") : README.index("## Tests")]


def test_the_sdk_example_says_how_to_get_the_sdk() -> None:
    """Set-up command 1 installs the gateway, not the openai SDK the example imports."""
    before_snippet = QUICK_START[: QUICK_START.index("```python")]
    assert "pip install . && pixgate serve" in before_snippet
    assert "pip install openai" in before_snippet


async def test_the_sdk_example_runs(demo_gateway: Gateway, tmp_path: Path) -> None:
    (snippet,) = re.findall(r"```python\n(.*?)```", QUICK_START, flags=re.S)
    assert 'base_url="http://127.0.0.1:8080/v1"' in snippet and '"fox.png"' in snippet
    script = tmp_path / "example.py"
    fox = tmp_path / "fox.png"
    script.write_text(
        snippet.replace("http://127.0.0.1:8080", demo_gateway.url).replace(
            '"fox.png"', repr(str(fox))
        )
    )
    # The sync SDK, in a thread while the gateway serves on this loop.
    await asyncio.to_thread(runpy.run_path, str(script))
    with Image.open(fox) as image:
        assert image.format == "PNG" and image.size == (768, 512)
