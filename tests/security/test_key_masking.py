"""A provider key never reaches a client or the log, in any encoding an upstream echoes it in.

Property tests: keys with arbitrary characters, each encoded every way a URL, header or body
carries text (raw, percent-encoded with + or %20 and either hex case, JSON-escaped, base64
standard and URL-safe with and without padding, at any offset inside a longer string), first
through `redact` directly, then through real upstreams that echo the relayed key back in a 400
body and in a redirect loop whose URL carries it as a query parameter."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlencode

import aiohttp
import pytest
import yaml
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.runtime.redact import redact
from tests.gateway import run_gateway
from tests.upstreams import serve_upstream

Encoder = Callable[[str, bytes, bytes], str]


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def _b64(alphabet: str, pad: bool) -> Encoder:
    def encode(key: str, before: bytes, after: bytes) -> str:
        data = before + key.encode() + after
        out = base64.b64encode(data) if alphabet == "std" else base64.urlsafe_b64encode(data)
        text = out.decode()
        return text if pad else text.rstrip("=")

    return encode


ENCODINGS: dict[str, Encoder] = {
    "raw": lambda k, _b, _a: k,
    "percent": lambda k, _b, _a: quote(k, safe=""),
    "percent, lower hex": lambda k, _b, _a: _lower_hex(quote(k, safe="")),
    "percent, path-safe": lambda k, _b, _a: quote(k),
    "form (+ for space)": lambda k, _b, _a: quote_plus(k),
    "query string": lambda k, _b, _a: urlencode({"api_key": k}),
    "json ascii": lambda k, _b, _a: json.dumps(k),
    "json utf-8": lambda k, _b, _a: json.dumps(k, ensure_ascii=False),
    "json of a url": lambda k, _b, _a: json.dumps("https://x.test/?key=" + quote(k, safe="")),
    "base64": _b64("std", True),
    "base64 unpadded": _b64("std", False),
    "base64url": _b64("url", True),
    "base64url unpadded": _b64("url", False),
    "basic auth": lambda k, _b, _a: base64.b64encode(b"user:" + k.encode()).decode(),
    "base64 of percent": lambda k, b, a: _b64("std", False)(quote(k, safe=""), b, a),
}

_RUN = re.compile(r"[A-Za-z0-9+/=_-]{8,}")


def leaks(text: str, key: str) -> bool:
    """Whether `key` can be read back out of `text` by undoing any of the encodings."""
    if key in text or key in unquote(text) or key in unquote_plus(text):
        return True
    for candidate in re.findall(r'"(?:[^"\\]|\\.)*"', text):
        try:
            if key in json.loads(candidate) or key in unquote(json.loads(candidate)):
                return True
        except (ValueError, TypeError):
            continue
    raw = key.encode()
    pct = quote(key, safe="").encode()
    for run in _RUN.findall(text):
        for start in range(4):
            chunk = run[start:].rstrip("=")
            chunk = chunk[: len(chunk) - 1] if len(chunk) % 4 == 1 else chunk
            chunk += "=" * (-len(chunk) % 4)
            for data in (chunk, chunk.replace("-", "+").replace("_", "/")):
                try:
                    decoded = base64.b64decode(data, validate=True)
                except (binascii.Error, ValueError):
                    continue
                if raw in decoded or pct in decoded:
                    return True
    return False


KEYS = st.text(st.characters(blacklist_categories=("Cs",)), min_size=12, max_size=40).filter(
    lambda k: k.strip() == k
)


@settings(max_examples=200, deadline=None)
@given(
    key=KEYS,
    encoding=st.sampled_from(sorted(ENCODINGS)),
    before=st.binary(max_size=5),
    after=st.binary(max_size=5),
    context=st.sampled_from(["{}", "error: {} (bad key)", '{{"detail": [{}]}}', "x{}y"]),
)
def test_redact_masks_every_encoding(
    key: str, encoding: str, before: bytes, after: bytes, context: str
) -> None:
    encoded = ENCODINGS[encoding](key, before, after)
    text = context.format(encoded)
    assert leaks(text, key), "the oracle must see the unmasked key"
    assert not leaks(redact(text, key), key), (encoding, text, redact(text, key))


def test_redact_leaves_other_text_alone() -> None:
    text = "HTTP 400: invalid size 1024x1024; see https://docs.test/errors?code=7"
    assert redact(text, "sk-live-0123456789abcdef") == text


# --- through a real upstream and the gateway ------------------------------------------------

ECHO_ENCODINGS = sorted(ENCODINGS)
NUL = bytes(1)


async def _echo(request: web.Request) -> web.Response:
    """400 with the key it received, in every encoding, as a confused upstream might."""
    key = request.query.get("api_key", "")
    parts = [f"{name}={ENCODINGS[name](key, NUL, b'!!')}" for name in ECHO_ENCODINGS]
    parts.append(f"your url was {request.url}")
    return web.json_response({"error": {"message": "; ".join(parts)}}, status=400)


async def _loop(request: web.Request) -> web.Response:
    raise web.HTTPFound(str(request.url))  # to itself, query (and key) included


def _provider(pid: str, path: str, pattern: str) -> dict[str, object]:
    return {
        "id": pid,
        "title": pid,
        "base_url": "${ECHO_BASE}",
        "auth": {"query": "api_key", "key_pattern": pattern},
        "models": {"m": {}},
        "tasks": {
            "generate": {"steps": [{"name": "gen", "request": {"method": "GET", "path": path}}]}
        },
    }


@dataclass
class Relay:
    url: str
    logs: list[str]


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(self.format(record))


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    root = tmp_path / "config"
    (root / "providers.d").mkdir(parents=True)
    for pid, path, pattern in (("echo", "/echo", "^rk-"), ("loop", "/loop", "^lk-")):
        doc = _provider(pid, path, pattern)
        (root / "providers.d" / f"{pid}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    routes = {
        "demo": False,
        "relay": True,
        "routes": {p: {"targets": [{"provider": p, "model": "m"}]} for p in ("echo", "loop")},
        # every example fails on purpose: the breaker must not cut the loop provider off
        "providers": {"loop": {"circuit_breaker": {"failures": 1000}}},
    }
    (root / "routes.yaml").write_text(yaml.safe_dump(routes))
    upstream = web.Application()
    upstream.router.add_get("/echo", _echo)
    upstream.router.add_get("/loop", _loop)
    logs: list[str] = []
    handler = _Collect(logs)
    logger = logging.getLogger()
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        async with serve_upstream(upstream) as base:
            async with run_gateway(root, tmp_path / "files", {"ECHO_BASE": base}) as gw:
                yield Relay(gw.v1, logs)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


# Header-safe keys: a relayed key arrives in `Authorization: Bearer <key>`.
RELAY_TAILS = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=10, max_size=30
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(tail=RELAY_TAILS, route=st.sampled_from(["echo", "loop"]))
async def test_a_relayed_key_echoed_back_never_reaches_the_client_or_the_log(
    relay: Relay, tail: str, route: str
) -> None:
    key = ("rk-" if route == "echo" else "lk-") + tail
    relay.logs.clear()
    body = {"model": route, "prompt": "x"}
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{relay.url}/images/generations", json=body, headers=headers) as r:
            text = await r.text()
            assert r.status >= 400
    # The echo's text (or the redirect failure) does reach the client, masked:
    assert ("basic auth=" if route == "echo" else "more than 10 redirects") in text, text
    assert not leaks(text, key), text
    logged = "\n".join(relay.logs)
    assert not leaks(logged, key), logged


def _regex_only(text: str, key: str) -> str:
    """What `redact` did before its plain-text shortcut: the key's regex on every text."""
    from engine.runtime.redact import _masker

    _secret, pattern, runs, masked = _masker(key).args
    text = pattern.sub(lambda _: masked, text)
    for run in runs:
        text = text.replace(run, masked)
    return text


SHORTCUT_KEYS = st.one_of(
    st.text(min_size=8, max_size=24),
    st.text(alphabet="abcXYZ019 -_", min_size=8, max_size=24),  # encodes without %
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=SHORTCUT_KEYS,
    other=SHORTCUT_KEYS,
    pieces=st.lists(
        st.one_of(st.text(max_size=12), st.sampled_from(["%", "\\", "+", " ", "%2B", "\\u0041"])),
        max_size=6,
    ),
    encoding=st.sampled_from(sorted(ENCODINGS)),
    data=st.data(),
)
def test_the_shortcuts_mask_as_the_regex_does(
    key: str, other: str, pieces: list[str], encoding: str, data: st.DataObject
) -> None:
    """Texts with and without `%`, `\\` or `+`, holding one key or two, raw or encoded
    anywhere: neither the plain-text replace nor looking for base64 runs only where a stretch
    of base64 characters is long enough changes what is masked."""
    encoded = ENCODINGS[encoding](key, b"", b"")
    at = data.draw(st.integers(0, len(pieces)))
    with_key = [*pieces[:at], encoded, *pieces[at:]]
    also = ENCODINGS[data.draw(st.sampled_from(sorted(ENCODINGS)))](other, b"", b"")
    where = data.draw(st.integers(0, len(with_key)))
    both = [*with_key[:where], also, *with_key[where:]]
    for text in ("".join(pieces), "".join(with_key), "".join(both)):
        assert redact(text, key) == _regex_only(text, key)
        assert redact(text, key, other) == _regex_only(_regex_only(text, key), other)
