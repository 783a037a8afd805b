"""jsonbytes: a small JSON document is kept in a bytes object of its own size, not in orjson's
worst-case buffer (what keep-alive connections and queued upstream requests hold)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import orjson

from engine import jsonbytes, rawtext
from engine.runtime.calls.upstream import build_request
from tests.dsl.test_request_forms import BASE_CTX, provider

ANSWER = {"created": 1, "data": [{"url": "http://127.0.0.1/files/a.png"}]}


def kept(make: Callable[[], Any]) -> int:
    """Bytes that what `make()` returns keeps allocated (tracemalloc)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = make()
        size = tracemalloc.get_traced_memory()[0] - before
        del result
        return size
    finally:
        tracemalloc.stop()


def test_a_small_document_takes_its_own_size() -> None:
    assert jsonbytes.dumps(ANSWER) == orjson.dumps(ANSWER)
    assert kept(lambda: jsonbytes.dumps(ANSWER)) < 512


def test_a_large_document_is_not_copied() -> None:
    big = orjson.dumps("x" * (jsonbytes.COPY_UP_TO + 1))
    assert jsonbytes.sized(big) is big


def test_responses_are_sized() -> None:
    assert rawtext.dumps(ANSWER) == orjson.dumps(ANSWER)
    assert kept(lambda: rawtext.dumps(ANSWER)) < 512


def test_upstream_json_bodies_are_sized() -> None:
    spec = provider({"path": "/x", "json": {"prompt": "{{ prompt }}"}})
    step = spec.tasks["generate"].steps[1].request

    def body() -> Any:
        return build_request(step, BASE_CTX, spec.base_url, spec.auth, None).data

    assert body() == b'{"prompt":"a red fox"}'
    assert kept(body) < 512
