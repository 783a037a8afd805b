"""Config problems as `file:line:col CODE path: message`, collected, never raised one by one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


# Stable codes: CI scripts and docs refer to them, so never renumber (docs/diagnostics.md).
CODES: dict[str, str] = {
    "E001": "YAML syntax error",
    "E002": "file is not a YAML mapping, or cannot be read",
    "E101": "schema violation",
    "E102": "environment variable is not set and has no default",
    "E103": "duplicate provider id",
    "E104": "provider file name differs from its id",
    "E105": "keys file cannot be read",
    "E201": "template syntax error",
    "E202": "unknown template variable",
    "E203": "reference to an unknown or later step",
    "E204": "malformed `$for_each` (missing `$item`, unknown key, bad `$as`)",
    "E211": "JMESPath syntax error",
    "E221": "invalid regular expression",
    "E231": "invalid duration",
    "E241": "invalid size",
    "E251": "invalid origin (auth.send_to, request.auth)",
    "E301": "route names an unknown provider",
    "E302": "route names a model the provider does not declare",
    "E303": "model name claimed twice",
    "E304": "default names an unknown route",
    "W401": "provider has no keys and is unavailable for routing",
    "W402": "route target's provider is unavailable",
    "W403": "a gateway client key also matches a provider's key pattern",
    "W404": "two providers' key patterns overlap",
    "W405": "a prompt optimizer's provider has no keys",
    "W406": "a url: step's key depends on where its URL points",
}


@dataclass(frozen=True, slots=True)
class Diagnostic:
    file: str
    line: int
    col: int
    code: str
    path: str
    message: str

    @property
    def severity(self) -> Severity:
        return Severity.WARNING if self.code.startswith("W") else Severity.ERROR

    def format(self) -> str:
        where = self.path or "."
        return f"{self.file}:{self.line}:{self.col} {self.code} {where}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "code": self.code,
            "severity": self.severity.value,
            "path": self.path,
            "message": self.message,
        }


def format_path(parts: Iterable[str | int]) -> str:
    """`tasks.generate.steps[0].request` from ("tasks", "generate", "steps", 0, "request")."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = str(part)
    return out


@dataclass(slots=True)
class Diagnostics:
    """An append-only list of problems found while building a snapshot."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, diag: Diagnostic) -> None:
        self.items.append(diag)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.WARNING]

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.items, key=lambda d: (d.file, d.line, d.col, d.code))
