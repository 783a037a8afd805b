"""Compare expected values from golden cases with what was actually seen, as readable problems.

Expected strings may be placeholders:

* ``"<any>"``: any value (the key must be present);
* ``"<string>"``, ``"<int>"``, ``"<number>"``, ``"<bool>"``: any value of that JSON type
  (in text-only places such as headers and query strings, ``"<int>"`` and ``"<number>"``
  match the decimal text of a number);
* ``"<re:PATTERN>"``: a string that fully matches the regular expression.

Strings may also contain ``{{upstream}}`` and ``{{gateway}}``, replaced by :func:`substitute`
before comparing (escaped inside ``<re:...>``), and ``{{b64:WIDTHxHEIGHT[:FORMAT]}}``, replaced by
the base64 of a solid-colour image of that size (see :mod:`engine.testing.images`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .images import expand_b64_tokens

_INT_TEXT = re.compile(r"^-?[0-9]+$")
_NUMBER_TEXT = re.compile(r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$")
PLACEHOLDERS = ("<any>", "<string>", "<int>", "<number>", "<bool>")


def substitute(value: Any, urls: Mapping[str, str]) -> Any:
    """Replace ``{{name}}`` (e.g. ``{{upstream}}``) in every string of a JSON-like value."""
    if isinstance(value, str):
        return substitute_text(value, urls)
    if isinstance(value, dict):
        return {substitute_text(str(k), urls): substitute(v, urls) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, urls) for v in value]
    return value


def substitute_text(text: str, urls: Mapping[str, str]) -> str:
    if "{{" not in text:
        return text
    regex = text.startswith("<re:") and text.endswith(">")
    for name, url in urls.items():
        text = text.replace("{{" + name + "}}", re.escape(url) if regex else url)
    return expand_b64_tokens(text)


def describe(value: Any, limit: int = 160) -> str:
    """A short one-line rendering of a value for messages (long strings are cut)."""
    if isinstance(value, str) and len(value) > limit:
        return json.dumps(value[: limit - 40], ensure_ascii=False)[:-1] + f'…" ({len(value)} chars)'
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def _placeholder(expected: str, actual: Any, text: bool) -> str | None:
    """None when `actual` satisfies the placeholder, else what was wanted."""
    if expected == "<any>":
        return None
    if expected == "<string>":
        return None if isinstance(actual, str) else "a string"
    if expected == "<int>":
        if text:
            return None if isinstance(actual, str) and _INT_TEXT.match(actual) else "an integer"
        ok = isinstance(actual, int) and not isinstance(actual, bool)
        return None if ok else "an integer"
    if expected == "<number>":
        if text:
            return None if isinstance(actual, str) and _NUMBER_TEXT.match(actual) else "a number"
        ok = isinstance(actual, int | float) and not isinstance(actual, bool)
        return None if ok else "a number"
    if expected == "<bool>":
        if text:
            return None if actual in ("true", "false") else "true or false"
        return None if isinstance(actual, bool) else "a boolean"
    pattern = expected[4:-1]
    if isinstance(actual, str) and re.fullmatch(pattern, actual, re.DOTALL):
        return None
    return f"a string matching /{pattern}/"


def is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and (
        value in PLACEHOLDERS or (value.startswith("<re:") and value.endswith(">"))
    )


def compare(
    expected: Any,
    actual: Any,
    where: str,
    problems: list[str],
    *,
    exact: bool,
    text: bool = False,
) -> None:
    """Append a line to `problems` for every difference.

    `exact`: objects must have exactly the expected keys (else extra keys are allowed).
    Lists always need the same length. `text`: actual values are text (headers, query).
    """
    if is_placeholder(expected):
        wanted = _placeholder(expected, actual, text)
        if wanted is not None:
            problems.append(f"{where}: expected {wanted}, got {describe(actual)}")
        return
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            problems.append(f"{where}: expected an object, got {describe(actual)}")
            return
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{where}.{key}: expected {describe(value)}, but it is missing")
            else:
                compare(value, actual[key], f"{where}.{key}", problems, exact=exact, text=text)
        if exact:
            for key in actual:
                if key not in expected:
                    problems.append(f"{where}.{key}: not expected, but got {describe(actual[key])}")
        return
    if isinstance(expected, list):
        if not isinstance(actual, list):
            problems.append(f"{where}: expected a list, got {describe(actual)}")
            return
        if len(expected) != len(actual):
            problems.append(
                f"{where}: expected {len(expected)} items, got {len(actual)}: {describe(actual)}"
            )
        for i, (e, a) in enumerate(zip(expected, actual, strict=False)):
            compare(e, a, f"{where}[{i}]", problems, exact=exact, text=text)
        return
    if not _equal(expected, actual):
        problems.append(f"{where}: expected {describe(expected)}, got {describe(actual)}")


def _equal(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return expected == actual
    return type(expected) is type(actual) and bool(expected == actual)


def compare_headers(
    expected: Mapping[str, str | None],
    actual: Mapping[str, str],
    where: str,
    problems: list[str],
) -> None:
    """Subset match with case-insensitive names; a None value means "must be absent"."""
    lower = {k.lower(): v for k, v in actual.items()}
    for name, value in expected.items():
        got = lower.get(name.lower())
        if value is None:
            if got is not None:
                problems.append(f"{where}.{name}: expected absent, got {describe(got)}")
        elif got is None:
            problems.append(f"{where}.{name}: expected {describe(value)}, but it is missing")
        else:
            compare(value, got, f"{where}.{name}", problems, exact=True, text=True)
