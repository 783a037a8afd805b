"""`${VAR}` and `${VAR:-default}` in string values, resolved once when a snapshot is built."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .yamlpos import Path

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\$")


class UnsetVariable(Exception):
    def __init__(self, *names: str) -> None:
        super().__init__(", ".join(names))
        self.names = names
        self.name = names[0]


def interpolate_string(text: str, env: Mapping[str, str]) -> str:
    """Replace references; `$$` escapes a dollar. An unset variable without default raises."""
    if "$" not in text:
        return text
    unset: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                unset.append(name)
                return ""
            return default
        return value

    result = _REF.sub(replace, text)
    if unset:
        raise UnsetVariable(*unset)
    return result


def interpolate_tree(
    data: Any, env: Mapping[str, str], on_unset: Callable[[Path, str], None], path: Path = ()
) -> Any:
    """A copy of `data` with every string interpolated; unset names are reported, left empty."""
    if isinstance(data, str):
        try:
            return interpolate_string(data, env)
        except UnsetVariable as exc:
            for name in exc.names:
                on_unset(path, name)
            return ""
    if isinstance(data, dict):
        return {k: interpolate_tree(v, env, on_unset, (*path, str(k))) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate_tree(v, env, on_unset, (*path, i)) for i, v in enumerate(data)]
    return data
