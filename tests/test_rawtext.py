"""rawtext: long JSON strings stay in the upstream's body and are written back in place."""

from __future__ import annotations

import base64
import json
import random
import string
from typing import Any

import orjson
import pytest

from engine import rawtext
from engine.dsl.expressions import Expr
from engine.rawtext import RawBody, RawText
from engine.runtime.calls.imagerefs import ImageRef, decode_b64, image_ref

B64 = base64.b64encode(random.Random(1).randbytes(100_000)).decode()


def body(obj: Any) -> bytearray:
    return bytearray(orjson.dumps(obj))


def test_a_long_base64_string_is_a_view_of_the_body() -> None:
    raw = body({"created": 1, "data": [{"b64_json": B64, "revised_prompt": "a fox"}]})
    tree = rawtext.loads(raw)
    value = tree["data"][0]["b64_json"]
    assert isinstance(value, RawText) and value.view.obj is raw  # no copy was made
    assert str(value) == B64 and len(value) == len(B64)
    assert tree["data"][0]["revised_prompt"] == "a fox" and tree["created"] == 1
    assert rawtext.plain(tree) == orjson.loads(raw)


def test_plain_returns_the_same_tree_when_it_holds_no_raw_text() -> None:
    tree = {"a": [1, {"b": "c"}], "d": None}
    assert rawtext.plain(tree) is tree


def test_expression_functions_see_raw_text_as_the_string_it_is() -> None:
    """to_string(), length() and friends need real strings: they get them, at a copy."""
    uri = "data:image/png;base64," + B64
    tree = rawtext.loads(body({"status": "ok", "data": [{"url": uri}]}))
    assert Expr("length(data[0].url)").search(tree) == len(uri)
    assert Expr("starts_with(data[0].url, 'data:image/png')").truthy(tree)
    assert Expr("contains(to_string(@), 'base64,')").truthy(tree)
    assert isinstance(Expr("data[0].url").search(tree), RawText)  # plain paths keep the view


def test_short_bodies_and_strings_with_escapes_are_parsed_as_usual() -> None:
    assert rawtext.loads(body({"b64_json": "abc"})) == {"b64_json": "abc"}
    escaped = B64[:50_000] + "/" + B64[50_000:]
    raw = bytearray(json.dumps({"a": 'q"uote', "b64": escaped}).replace("/", "\\/").encode())
    tree = rawtext.loads(raw)
    assert tree == {"a": 'q"uote', "b64": escaped} and isinstance(tree["b64"], str)


def test_escaped_quotes_before_a_long_string_do_not_shift_the_pairing() -> None:
    doc = {"note": 'say "hi" \\', 'k"ey': "v", "img": B64, "tail": "\\"}
    raw = body(doc)
    tree = rawtext.loads(raw)
    assert isinstance(tree["img"], RawText)
    assert rawtext.plain(tree) == doc


def test_a_long_key_stays_a_key() -> None:
    doc = {B64: {"nested": B64[:70_000]}, "x": [B64]}
    tree = rawtext.loads(body(doc))
    assert list(tree) == [B64, "x"] and isinstance(next(iter(tree)), str)
    assert rawtext.plain(tree) == doc


def test_a_marker_lookalike_from_the_upstream_stays_text() -> None:
    doc = {"a": "pixgate-raw-0000000000000000-0", "img": B64}
    tree = rawtext.loads(body(doc))
    assert tree["a"] == doc["a"] and isinstance(tree["img"], RawText)


def test_too_many_strings_fall_back_to_a_plain_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rawtext, "MAX_STRINGS", 3)
    tree = rawtext.loads(body({"a": "1", "b": "2", "img": B64}))
    assert isinstance(tree["img"], str)


def test_malformed_bodies_still_fail_to_parse() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        rawtext.loads(bytearray(b'{"img": "' + B64.encode()))
    with pytest.raises(orjson.JSONDecodeError):
        rawtext.loads(bytearray(b'{"img": "' + B64.encode() + b'" "x"}'))


@pytest.mark.parametrize("seed", range(40))
def test_random_documents_read_back_exactly(seed: int) -> None:
    """Whatever the mix of short, escaped and long strings, the tree means the same."""
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + '+/= "\\\n\té'

    def text() -> str:
        if rng.random() < 0.3:
            return B64[: rng.randrange(60_000, 100_000)]
        if rng.random() < 0.2:
            return "".join(rng.choice(alphabet) for _ in range(rng.randrange(70_000, 70_100)))
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))

    def node(depth: int) -> Any:
        pick = rng.random()
        if depth > 3 or pick < 0.4:
            return rng.choice([text(), rng.randrange(-5, 5), None, True, 1.5])
        if pick < 0.7:
            return [node(depth + 1) for _ in range(rng.randrange(0, 4))]
        size = rng.randrange(0, 4)
        keys = [text() if rng.random() < 0.1 else text()[:8] for _ in range(size)]
        return {k + str(i): node(depth + 1) for i, k in enumerate(keys)}

    doc = {"data": [node(0) for _ in range(3)], "big": B64}
    raw = body(doc)
    tree = rawtext.loads(raw)
    assert rawtext.plain(tree) == doc
    out = rawtext.dumps(tree)
    assert isinstance(out, RawBody)
    assert orjson.loads(b"".join(out._pieces)) == doc and out.size == len(orjson.dumps(doc))


def test_dumps_without_raw_text_is_plain_orjson() -> None:
    assert rawtext.dumps({"a": [1, "b"]}) == b'{"a":[1,"b"]}'
    with pytest.raises(TypeError):
        rawtext.dumps({"a": object()})


async def test_the_body_writes_its_pieces_in_order() -> None:
    tree = rawtext.loads(body({"data": [{"b64_json": B64}, {"b64_json": B64[::-1]}]}))
    out = rawtext.dumps({"created": 2, "data": tree["data"]})
    assert isinstance(out, RawBody)
    written: list[bytes] = []

    class Writer:
        async def write(self, chunk: bytes | memoryview) -> None:
            written.append(bytes(chunk))

    decoded = json.loads(out.decode())
    await out.write(Writer())  # type: ignore[arg-type]
    assert (
        orjson.loads(b"".join(written))
        == decoded
        == {
            "created": 2,
            "data": [{"b64_json": B64}, {"b64_json": B64[::-1]}],
        }
    )
    assert out._pieces == []  # written: the views are let go


def test_image_refs_from_raw_text_keep_the_view() -> None:
    uri = "data:image/webp;base64," + B64
    tree = rawtext.loads(body({"a": B64, "b": uri, "c": "  " + B64 + " "}))
    ref = image_ref(tree["b"], "auto", "http://up/")
    assert ref is not None and ref.kind == "b64" and ref.mime == "image/webp"
    assert isinstance(ref.value, RawText) and str(ref.value) == B64
    assert decode_b64(ref.value) == base64.b64decode(B64)
    for kind in ("auto", "base64"):
        assert image_ref(tree["a"], kind, "") == ImageRef("b64", tree["a"])
    assert str(tree["c"].strip()) == B64


def test_a_long_non_base64_string_is_resolved_as_before() -> None:
    url = "https://cdn.example/" + "x" * 70_000
    tree = rawtext.loads(body({"url": url}))
    assert isinstance(tree["url"], RawText)
    assert image_ref(tree["url"], "auto", "") == ImageRef("url", url)


async def test_a_body_lets_go_of_its_bytes_once_written_or_when_the_client_left() -> None:
    class Gone:
        async def write(self, chunk: bytes | memoryview) -> None:
            raise ConnectionResetError("client left")

    tree = rawtext.loads(body({"b64_json": B64}))
    out = rawtext.dumps(tree)
    assert isinstance(out, RawBody) and out.size == len(B64) + len('{"b64_json":""}')
    with pytest.raises(ConnectionResetError):
        await out.write(Gone())  # type: ignore[arg-type]
    assert out._pieces == []  # the view of the upstream's body is released
