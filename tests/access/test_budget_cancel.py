"""A budgeted call cancelled while its upstream works (a streaming client leaving) keeps its
estimate charged, since the upstream may still bill it, and is counted as a failure."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from engine.api import imagestream
from tests.access.test_budgets import ADMIN, KEY, admin_get, config
from tests.gateway import run_gateway


async def test_a_client_leaving_mid_call_keeps_the_estimate_charged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imagestream, "KEEPALIVE_SECONDS", 0.05)
    root = config(tmp_path)
    env = {"PIXGATE_ADMIN_KEY": ADMIN}
    async with (
        run_gateway(root, tmp_path / "files", env=env) as gw,
        aiohttp.ClientSession() as http,
    ):
        resp = await http.post(
            f"{gw.v1}/images/generations",
            json={"model": "demo-async", "prompt": "slow", "n": 2, "stream": True, "delay": 10},
            headers={"Authorization": f"Bearer {KEY}"},
        )
        assert (await resp.content.readline()).startswith(b": keep-alive")
        resp.close()  # the client goes away while the upstream still works
        for _ in range(100):  # the next keep-alive finds it gone and cancels the call
            _, _, body = await admin_get(gw, "group_by=client")
            report = json.loads(body)
            if report["data"]:
                break
            await asyncio.sleep(0.05)
    assert [(r["client"], r["requests"], r["failures"], r["cost_usd"]) for r in report["data"]] == [
        ("paying", 1, 1, 0.0)
    ]
    assert report["budgets"]["paying"]["spent_today_usd"] == 0.5  # 2 images at $0.25, kept
