"""Strings a regex matches, made from its parse tree, to detect overlapping key patterns.

Regex intersection is hard in general; a handful of representative examples per pattern
(shortest and longer repeats, every alternative) catches the overlaps that matter for keys.
"""

from __future__ import annotations

import itertools
import re
import re._constants as sre_c  # type: ignore[import-not-found]
import re._parser as sre_parse  # type: ignore[import-not-found]
from typing import Any

MAX_EXAMPLES = 32
_CATEGORY = {
    sre_c.CATEGORY_DIGIT: "0",
    sre_c.CATEGORY_WORD: "a",
    sre_c.CATEGORY_SPACE: " ",
    sre_c.CATEGORY_NOT_DIGIT: "a",
    sre_c.CATEGORY_NOT_WORD: "-",
    sre_c.CATEGORY_NOT_SPACE: "a",
}


def examples(pattern: str) -> list[str]:
    """Up to MAX_EXAMPLES strings that `re.search(pattern, s)` accepts."""
    try:
        tree = sre_parse.parse(pattern)
    except (re.error, RecursionError):
        return []
    found: list[str] = []
    for spread in (0, 1, 8, 24):
        for text in itertools.islice(_seq(list(tree), spread), MAX_EXAMPLES):
            if text not in found and re.search(pattern, text):
                found.append(text)
    return found[:MAX_EXAMPLES]


def _seq(items: list[Any], spread: int) -> Any:
    parts = [list(itertools.islice(_node(op, av, spread), 4)) for op, av in items]
    for combo in itertools.product(*parts):
        yield "".join(combo)


def _node(op: Any, av: Any, spread: int) -> Any:
    if op is sre_c.LITERAL:
        yield chr(av)
    elif op is sre_c.NOT_LITERAL:
        yield "a" if chr(av) != "a" else "b"
    elif op is sre_c.ANY:
        yield "a"
    elif op is sre_c.IN:
        yield from _charset(av)
    elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None)):
        low, high, sub = av
        count = low + spread if high == sre_c.MAXREPEAT else min(high, low + spread)
        for unit in itertools.islice(_seq(list(sub), spread), 2):
            yield unit * count
    elif op is sre_c.SUBPATTERN:
        yield from _seq(list(av[-1]), spread)
    elif op is sre_c.BRANCH:
        for branch in av[1]:
            yield from itertools.islice(_seq(list(branch), spread), 2)
    elif op in (sre_c.AT, sre_c.ASSERT, sre_c.ASSERT_NOT) or op is sre_c.GROUPREF:
        yield ""
    else:
        yield ""


def _charset(items: list[Any]) -> Any:
    negate = any(op is sre_c.NEGATE for op, _ in items)
    if negate:
        yield "a"
        return
    for op, av in items:
        if op is sre_c.LITERAL:
            yield chr(av)
        elif op is sre_c.RANGE:
            yield chr(av[0])
        elif op is sre_c.CATEGORY:
            yield _CATEGORY.get(av, "a")
