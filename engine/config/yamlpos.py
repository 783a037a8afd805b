"""Load YAML keeping the line and column of every node, so diagnostics can point at them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Located:
    """A parsed document plus where each value (by its path) starts in the file (1-based)."""

    data: Any
    positions: dict[Path, tuple[int, int]]

    def where(self, path: Path) -> tuple[int, int]:
        """Position of the deepest known node on `path` (a missing key points at its parent)."""
        for cut in range(len(path), -1, -1):
            pos = self.positions.get(path[:cut])
            if pos is not None:
                return pos
        return (1, 1)


class YamlSyntaxError(Exception):
    def __init__(self, message: str, line: int, col: int) -> None:
        super().__init__(message)
        self.line = line
        self.col = col


def load_located(text: str) -> Located:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = str(exc.problem or exc)
        if exc.context and exc.context_mark is not None:
            cm = exc.context_mark
            message += f" ({exc.context} at line {cm.line + 1}, column {cm.column + 1})"
        raise YamlSyntaxError(message, line, col) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(str(exc), 1, 1) from None
    finally:
        loader.dispose()
    positions: dict[Path, tuple[int, int]] = {}
    if node is not None:
        _walk(node, (), positions)
    return Located(data, positions)


def _walk(node: yaml.Node, path: Path, out: dict[Path, tuple[int, int]]) -> None:
    out[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                child = (*path, str(key_node.value))
                _walk(value_node, child, out)
                if isinstance(value_node, yaml.CollectionNode) and not value_node.flow_style:
                    # A block collection starts on a later line: point at its key instead.
                    out[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), out)
