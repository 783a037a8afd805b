"""Golden case files: find them, validate them against schemas/golden.schema.json, load them.

A case lives in ``<cases_dir>/<provider-id>/<case-name>.yaml``; its id is
``<provider-id>/<case-name>``. The format is described by the schema (every field has a
description) and summarised in :mod:`engine.testing.golden`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from ..config.schemas import schema_dir
from ..config.yamlpos import Located, YamlSyntaxError, load_located
from .images import DEFAULT_COLOR

CASE_SUFFIXES = (".yaml", ".yml")
DEFAULT_TIMEOUT = 20.0
DEFAULT_PATH = "/v1/images/generations"
SCHEMA_COMMENT = "# yaml-language-server: $schema="

BodyKind = Literal["empty", "json", "text", "image", "sse"]


class CaseFileError(Exception):
    """One or more case files are invalid; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """A real image the fake upstream makes with Pillow."""

    width: int
    height: int
    format: str = "png"
    color: tuple[int, int, int] = DEFAULT_COLOR


@dataclass(frozen=True, slots=True)
class SseFrame:
    event: str | None
    data: Any = None
    text: str | None = None  # raw data text; wins over `data`

    def encode(self) -> str:
        lines = [f"event: {self.event}"] if self.event is not None else []
        payload = self.text if self.text is not None else json.dumps(self.data, ensure_ascii=False)
        lines += [f"data: {line}" for line in payload.split("\n")]
        return "\n".join(lines) + "\n\n"


@dataclass(frozen=True, slots=True)
class Answer:
    """A canned HTTP answer (from the fake upstream)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    kind: BodyKind = "empty"
    json: Any = None
    text: str | None = None
    image: ImageSpec | None = None
    sse: tuple[SseFrame, ...] = ()
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Expect:
    """An upstream request the gateway must send."""

    method: str
    path: str
    headers: dict[str, str | None] = field(default_factory=dict)
    query: dict[str, str | list[str]] | None = None
    json: Any = None
    has_json: bool = False
    multipart: dict[str, Any] | None = None
    text: str | None = None

    def summary(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True, slots=True)
class Exchange:
    expect: Expect
    respond: Answer
    description: str = ""
    line: int = 0  # where it starts in the case file

    def label(self, index: int) -> str:
        text = f"exchange #{index + 1} ({self.expect.summary()}"
        text += f", line {self.line})" if self.line else ")"
        return text + (f" [{self.description}]" if self.description else "")


@dataclass(frozen=True, slots=True)
class ClientRequest:
    method: str = "POST"
    path: str = DEFAULT_PATH
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    has_json: bool = False
    text: str | None = None


@dataclass(frozen=True, slots=True)
class ExpectedImage:
    width: int | None = None
    height: int | None = None
    format: str | None = None


@dataclass(frozen=True, slots=True)
class ExpectedError:
    exact: dict[str, Any] = field(default_factory=dict)  # type / code / param given
    message_contains: str | None = None


@dataclass(frozen=True, slots=True)
class ExpectedResponse:
    status: int = 200
    headers: dict[str, str | None] = field(default_factory=dict)
    json: Any = None
    has_json: bool = False
    images: tuple[ExpectedImage, ...] | None = None
    error: ExpectedError | None = None


@dataclass(frozen=True, slots=True)
class GoldenCase:
    id: str  # "<provider>/<name>"
    provider: str
    name: str
    path: Path
    description: str
    request: ClientRequest
    exchanges: tuple[Exchange, ...]
    response: ExpectedResponse
    env: dict[str, str] = field(default_factory=dict)
    base_path: str = ""
    unordered: bool = False
    timeout: float = DEFAULT_TIMEOUT
    route_timeout: float | None = None
    files: dict[str, Answer] = field(default_factory=dict)
    xfail: str | None = None
    cancel_after: int | None = None  # an async job, cancelled after this many upstream requests


# ---------------------------------------------------------------------------------------------
# discovery and loading


def discover_cases(cases_dir: str | Path, providers: Iterable[str] | None = None) -> list[Path]:
    """Case files under `cases_dir` (one folder per provider), sorted; optionally only some."""
    root = Path(cases_dir)
    wanted = set(providers) if providers is not None else None
    found: list[Path] = []
    if not root.is_dir():
        return found
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if wanted is not None and folder.name not in wanted:
            continue
        found += sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in CASE_SUFFIXES)
    return found


def load_cases(cases_dir: str | Path, providers: Iterable[str] | None = None) -> list[GoldenCase]:
    """Load and validate every case (of the given providers); CaseFileError lists all problems."""
    wanted = list(providers) if providers is not None else None
    root = Path(cases_dir)
    problems: list[str] = []
    if wanted is not None:
        for provider in wanted:
            if not (root / provider).is_dir():
                problems.append(f"{root / provider}: no golden cases for provider '{provider}'")
    cases: list[GoldenCase] = []
    for path in discover_cases(root, wanted):
        try:
            cases.append(load_case(path))
        except CaseFileError as exc:
            problems += exc.problems
    if problems:
        raise CaseFileError(problems)
    return cases


def load_case(path: str | Path) -> GoldenCase:
    """One case file; the provider is the name of its folder. Raises CaseFileError."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError([f"{file}: cannot read: {exc}"]) from None
    try:
        located = load_located(text)
    except YamlSyntaxError as exc:
        raise CaseFileError([f"{file}:{exc.line}:{exc.col}: YAML syntax: {exc}"]) from None
    doc = located.data
    if not isinstance(doc, dict):
        raise CaseFileError([f"{file}:1:1: expected a mapping at the top level"])
    problems = [
        f"{file}:{line}:{col}: {where or '(top)'}: {message}"
        for line, col, where, message in _schema_problems(doc, located)
    ]
    if problems:
        raise CaseFileError(problems)
    return _build(doc, file, located)


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((schema_dir() / "golden.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def schema_path() -> Path:
    return schema_dir() / "golden.schema.json"


def _schema_problems(doc: Any, located: Located) -> list[tuple[int, int, str, str]]:
    out: list[tuple[int, int, str, str]] = []
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    for error in errors:
        for path, message in _explain(error):
            line, col = located.where(path)
            out.append((line, col, _dotted(path), message))
    return out


def _explain(error: ValidationError) -> list[tuple[tuple[str | int, ...], str]]:
    path: tuple[str | int, ...] = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        allowed = sorted(schema.get("properties", {}))
        hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
        return [
            ((*path, str(key)), f"unknown key '{key}'{hint}")
            for key in error.instance
            if key not in allowed
        ]
    if error.validator == "not" and isinstance(error.validator_value, dict):
        reason = error.validator_value.get("description")
        if isinstance(reason, str):
            return [(path, reason)]
    if error.validator in ("oneOf", "anyOf") and error.context:
        inner = best_match(error.context)
        if inner is not None and inner.validator not in ("required", "not"):
            return _explain(inner)
    return [(path, error.message)]


def _dotted(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _build(doc: dict[str, Any], file: Path, located: Located) -> GoldenCase:
    provider = file.parent.name
    exchanges = tuple(
        Exchange(
            expect=_expect(raw["expect"]),
            respond=_answer(raw["respond"]),
            description=raw.get("description", ""),
            line=located.where(("exchanges", i))[0],
        )
        for i, raw in enumerate(doc["exchanges"])
    )
    return GoldenCase(
        id=f"{provider}/{file.stem}",
        provider=provider,
        name=file.stem,
        path=file,
        description=doc["description"],
        request=_request(doc["request"]),
        exchanges=exchanges,
        response=_response(doc["response"]),
        env={k: _env_text(v) for k, v in (doc.get("env") or {}).items()},
        base_path=doc.get("base_path", ""),
        unordered=bool(doc.get("unordered", False)),
        timeout=float(doc.get("timeout", DEFAULT_TIMEOUT)),
        route_timeout=float(doc["route_timeout"]) if "route_timeout" in doc else None,
        files={k: _answer(v) for k, v in (doc.get("files") or {}).items()},
        xfail=doc.get("xfail"),
        cancel_after=int(doc["cancel_after"]) if "cancel_after" in doc else None,
    )


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _request(raw: Mapping[str, Any]) -> ClientRequest:
    return ClientRequest(
        method=raw.get("method", "POST"),
        path=raw.get("path", DEFAULT_PATH),
        headers=dict(raw.get("headers") or {}),
        json=raw.get("json"),
        has_json="json" in raw,
        text=raw.get("text"),
    )


def _expect(raw: Mapping[str, Any]) -> Expect:
    return Expect(
        method=raw["method"],
        path=raw["path"],
        headers=dict(raw.get("headers") or {}),
        query=dict(raw["query"]) if "query" in raw else None,
        json=raw.get("json"),
        has_json="json" in raw,
        multipart=dict(raw["multipart"]) if "multipart" in raw else None,
        text=raw.get("text"),
    )


def _answer(raw: Mapping[str, Any]) -> Answer:
    kind: BodyKind = "empty"
    image = None
    frames: tuple[SseFrame, ...] = ()
    if "json" in raw:
        kind = "json"
    elif "text" in raw:
        kind = "text"
    elif "image" in raw:
        kind = "image"
        spec = raw["image"]
        color = spec.get("color", DEFAULT_COLOR)
        image = ImageSpec(
            width=spec["width"],
            height=spec["height"],
            format=spec.get("format", "png"),
            color=(int(color[0]), int(color[1]), int(color[2])),
        )
    elif "sse" in raw:
        kind = "sse"
        frames = tuple(
            SseFrame(event=f.get("event"), data=f.get("data"), text=f.get("text"))
            for f in raw["sse"]
        )
    return Answer(
        status=raw.get("status", 200),
        headers=dict(raw.get("headers") or {}),
        kind=kind,
        json=raw.get("json"),
        text=raw.get("text"),
        image=image,
        sse=frames,
        delay=float(raw.get("delay", 0.0)),
    )


def _response(raw: Mapping[str, Any]) -> ExpectedResponse:
    images = None
    if "images" in raw:
        images = tuple(
            ExpectedImage(width=i.get("width"), height=i.get("height"), format=i.get("format"))
            for i in raw["images"]
        )
    error = None
    if "error" in raw:
        spec = raw["error"]
        error = ExpectedError(
            exact={k: spec[k] for k in ("type", "code", "param") if k in spec},
            message_contains=spec.get("message_contains"),
        )
    return ExpectedResponse(
        status=raw.get("status", 200),
        headers=dict(raw.get("headers") or {}),
        json=raw.get("json"),
        has_json="json" in raw,
        images=images,
        error=error,
    )
