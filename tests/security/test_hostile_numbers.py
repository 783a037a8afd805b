"""Numbers written as text by someone else (a client's form field, a provider's JSON) are
read without raising: the same class as the hostile Retry-After values (issue 12, item 2).
`str.isdigit()` accepts '²' and '٣', which int() refuses or reads, and int() refuses more than
4,300 digits; both used to escape as a 500."""

from __future__ import annotations

import aiohttp
import pytest

from engine.dsl.expressions import Expr
from tests.gateway import Gateway

PNG = b"\x89PNG\r\n\x1a\n"
HOSTILE_INTEGERS = ["²", "٣", "１", "1" * 5000, "-" + "9" * 5000, "1e3", "0x10", " ", "1_0"]


async def test_hostile_integer_text_is_a_400(demo_gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        for value in HOSTILE_INTEGERS:
            body = {"model": "demo", "prompt": "x", "seed": value}
            async with http.post(f"{demo_gateway.v1}/images/generations", json=body) as resp:
                assert resp.status == 400, (value[:8], await resp.text())
                assert (await resp.json())["error"]["param"] == "seed"
            form = aiohttp.FormData()
            form.add_field("model", "demo")
            form.add_field("prompt", "x")
            form.add_field("n", value)
            form.add_field("image", PNG, filename="a.png", content_type="image/png")
            async with http.post(f"{demo_gateway.v1}/images/edits", data=form) as resp:
                assert resp.status == 400, (value[:8], await resp.text())


@pytest.mark.parametrize("value", ["1.2.3", ".", "9" * 400, "", "abc", "²"])
def test_to_int_never_raises_on_provider_text(value: str) -> None:
    assert Expr("to_int(v)").search({"v": value}) is None


def test_to_int_reads_what_it_can() -> None:
    assert Expr("to_int(v)").search({"v": "~35.7%"}) == 35
