"""Mask a secret in every form an upstream's URL, header or body may carry it back in.

A literal `text.replace(key, ...)` misses the key once something encoded it: `%2B` or `+` in a
URL (upper or lower hex), `\\u002b` or `\\/` in JSON, or base64 (`Basic` auth, a token echoed
in a debug field), where the key may sit at any byte offset of the encoded string. So:

* one regex per key in which every character matches itself, any percent-encoding of its UTF-8
  bytes, a JSON escape of it, and `+` for a space; mixed forms match too;
* for base64, the part of the encoding that depends on the key's bytes alone. A key at byte
  offset 0, 1 or 2 (mod 3) of the encoded string gives one of three fixed character runs (the
  characters shared with the neighbours differ, the middle does not), in the standard and the
  URL-safe alphabet, with or without padding (padding is outside the run). Those runs are
  masked for the raw, percent-encoded and JSON-escaped key alike.

Every encoded form of a character starts with `%`, `\\` or `+`, so a text without those can
only hold the key itself, and a plain `str.replace` does the regex's work (the panel masks
every log line with every key: ~0.85 us a key a line by regex, ~0.1 us by replace).

A base64 run is made of base64 characters only, so it can only sit in a stretch of them at
least as long as itself: runs longer than the text's longest such stretch (measured once a
text, again after a change) are not looked for. A log line seldom has a stretch as long as a
key's runs (~1.3x the key).
"""

from __future__ import annotations

import base64
import functools
import json
import re
from urllib.parse import quote, quote_plus

from .routing.keys import mask_key

_JSON_SHORT = {'"': '\\\\"', "\\": "\\\\\\\\", "/": "\\\\/", "\b": "\\\\b", "\f": "\\\\f",
               "\n": "\\\\n", "\r": "\\\\r", "\t": "\\\\t"}  # fmt: skip
MIN_BASE64_RUN = 8  # shorter runs would mask innocent text; such keys are too short anyway
_BASE64_STRETCH = re.compile(f"[A-Za-z0-9+/_-]{{{MIN_BASE64_RUN},}}")  # either alphabet


def redact(text: str, *secrets: str | None) -> str:
    """`text` with every form of every secret replaced by its `mask_key` form."""
    room = _room(text)
    for mask in _maskers(secrets):
        text, room = mask(text, room)
    return text


@functools.lru_cache(maxsize=64)
def _maskers(secrets: tuple[str | None, ...]) -> tuple[functools.partial[tuple[str, int]], ...]:
    """One lookup a text for all its secrets (the panel masks every log line with every key)."""
    return tuple(_masker(secret) for secret in secrets if secret)


def _room(text: str) -> int:
    """The length of the longest run of base64 characters in `text` (0 if under 8)."""
    return max(map(len, _BASE64_STRETCH.findall(text)), default=0)


@functools.lru_cache(maxsize=256)
def _masker(secret: str) -> functools.partial[tuple[str, int]]:
    masked = mask_key(secret)
    pattern = re.compile("".join(_char_pattern(c) for c in secret))
    runs = sorted(_base64_runs(secret), key=len, reverse=True)
    return functools.partial(_apply, secret, pattern, tuple(runs), masked)


def _apply(
    secret: str, pattern: re.Pattern[str], runs: tuple[str, ...], masked: str, text: str, room: int
) -> tuple[str, int]:
    """`text` masked, and its `_room` (`room` is the text's own as given)."""
    if "%" in text or "\\" in text or "+" in text:
        found = pattern.sub(lambda _: masked, text)  # the mask is text, not a template
    else:  # every encoded form of a character starts with one of those: only the key itself
        found = text.replace(secret, masked)  # can be here (the panel masks every log line)
    if found != text:
        text, room = found, _room(found)
    if runs and len(runs[-1]) <= room:  # else none fits (the runs go longest first)
        for run in runs:
            if len(run) <= room and run in text:
                text = text.replace(run, masked)
                room = _room(text)
    return text, room


def _char_pattern(char: str) -> str:
    forms = [re.escape(char)]
    data = char.encode("utf-8", "surrogatepass")
    forms.append("".join(f"%(?i:{b:02x})" for b in data))
    if char == " ":
        forms.append(r"\+")
    code = ord(char)
    if code < 0x10000:
        forms.append(f"\\\\u(?i:{code:04x})")
    else:  # JSON writes an astral character as a surrogate pair
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        forms.append(f"\\\\u(?i:{high:04x})\\\\u(?i:{low:04x})")
    if char in _JSON_SHORT:
        forms.append(_JSON_SHORT[char])
    return "(?:" + "|".join(forms) + ")"


def _base64_runs(secret: str) -> set[str]:
    sources = {
        secret,
        quote(secret, safe=""),
        quote(secret, safe="").lower(),
        quote_plus(secret, safe=""),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }
    runs: set[str] = set()
    for source in sources:
        data = source.encode("utf-8", "surrogatepass")
        for offset in range(3):
            run = _key_only_run(data, offset)
            if len(run) >= MIN_BASE64_RUN:
                runs.add(run)
                runs.add(run.translate(_URLSAFE))
    return runs


_URLSAFE = str.maketrans("+/", "-_")


def _key_only_run(data: bytes, offset: int) -> str:
    """The base64 characters fixed by `data` alone when it starts at byte `offset` (mod 3)."""
    encoded = base64.b64encode(bytes(offset) + data).decode("ascii").rstrip("=")
    start = {0: 0, 1: 2, 2: 3}[offset]  # characters that also carry the preceding bytes
    end_bits = (offset + len(data)) % 3  # a last, partial group also carries following bytes
    end = len(encoded) - {0: 0, 1: 1, 2: 1}[end_bits]
    return encoded[start:end]
