"""Build one immutable config snapshot from a directory: parse, interpolate, validate, compile.

`pixgate lint`, `pixgate serve` and hot reload all go through `build_snapshot`, so what lint
accepts is exactly what serve runs.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from ..dsl.provider import compile_provider
from ..dsl.routes import compile_routes
from ..dsl.spec import ProviderSpec, RoutesSpec
from .diagnostics import Diagnostic, Diagnostics, format_path
from .interpolate import interpolate_tree
from .schemas import validate
from .yamlpos import Located, YamlSyntaxError, load_located

Path = tuple[str | int, ...]
PROVIDER_GLOBS = ("*.yaml", "*.yml")


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    """Everything a request reads from config. Never mutated; a reload builds a new one."""

    providers: dict[str, ProviderSpec]
    routes: RoutesSpec
    version: str
    files: dict[str, str]
    loaded_at: float
    directory: str
    warnings: tuple[Diagnostic, ...] = ()

    def usable(self, provider: ProviderSpec) -> bool:
        """Routable now: has keys (or needs none), and is not the demo while it is off."""
        return provider.available and (self.routes.demo or not provider.on_gateway)

    def resolve_model(self, name: str) -> str | None:
        """Route name for a client-facing model name (route or alias)."""
        if name in self.routes.routes:
            return name
        return self.routes.aliases.get(name)


@dataclass(slots=True)
class BuildResult:
    snapshot: ConfigSnapshot | None
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.snapshot is not None


class _Doc:
    """One file being built: its text, positions, and a reporter bound to it."""

    def __init__(self, rel: str, diags: Diagnostics) -> None:
        self.rel = rel
        self.diags = diags
        self.located: Located | None = None
        self.failed = False

    def report(self, path: Path, code: str, message: str) -> None:
        line, col = self.located.where(path) if self.located else (1, 1)
        if not code.startswith("W"):
            self.failed = True
        self.diags.add(Diagnostic(self.rel, line, col, code, format_path(path), message))

    def load(self, text: str, schema: str, env: Mapping[str, str]) -> dict[str, Any] | None:
        try:
            self.located = load_located(text)
        except YamlSyntaxError as exc:
            self.diags.add(Diagnostic(self.rel, exc.line, exc.col, "E001", "", str(exc)))
            self.failed = True
            return None
        data = self.located.data
        if not isinstance(data, dict):
            self.report((), "E002", "expected a mapping at the top level")
            return None
        if not validate(schema, data, lambda p, m: self.report(p, "E101", m)):
            return None
        result: dict[str, Any] = interpolate_tree(
            data,
            env,
            lambda p, name: self.report(
                p,
                "E102",
                f"environment variable {name} is not set"
                " (give a default with ${" + name + ":-default})",
            ),
        )
        return result


def build_snapshot(
    directory: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> BuildResult:
    env = os.environ if env is None else env
    root = FsPath(directory)
    result = BuildResult(snapshot=None)
    diags = result.diagnostics
    providers: dict[str, ProviderSpec] = {}
    provider_dir = root / "providers.d"
    provider_files = (
        sorted({p for g in PROVIDER_GLOBS for p in provider_dir.glob(g)})
        if provider_dir.is_dir()
        else []
    )
    failed = False
    first_seen: dict[str, str] = {}
    for file in provider_files:
        rel = file.relative_to(root).as_posix()
        doc = _Doc(rel, diags)
        text = _read(file, doc, result)
        data = doc.load(text, "provider", env) if text is not None else None
        if data is not None:
            spec = compile_provider(data, rel, doc.report)
            if data.get("id") != file.stem:
                doc.report(
                    ("id",),
                    "E104",
                    f"id '{data.get('id')}' differs from file name "
                    f"'{file.name}'; rename one so they match",
                )
            if data.get("id") in first_seen:
                doc.report(
                    ("id",),
                    "E103",
                    f"provider id '{data['id']}' is already defined in {first_seen[data['id']]}",
                )
            first_seen.setdefault(data.get("id", ""), rel)
            if spec is not None and not doc.failed:
                providers[spec.id] = spec
                if not spec.available:
                    doc.report(
                        ("auth", "keys"),
                        "W401",
                        f"no keys configured (set "
                        f"{_env_name(spec.id)}_API_KEYS); provider is unavailable",
                    )
        failed = failed or doc.failed

    routes_file = root / "routes.yaml"
    routes_doc = _Doc("routes.yaml", diags)
    routes: RoutesSpec | None = None
    if not routes_file.is_file():
        diags.add(Diagnostic("routes.yaml", 1, 1, "E002", "", f"not found in {root}"))
        failed = True
    else:
        text = _read(routes_file, routes_doc, result)
        data = routes_doc.load(text, "routes", env) if text is not None else None
        if data is not None:
            routes = compile_routes(data, providers, routes_doc.report)
        failed = failed or routes_doc.failed
    if failed or routes is None:
        return result
    version = hashlib.sha256(
        "\n".join(f"{name}:{digest}" for name, digest in sorted(result.files.items())).encode()
    ).hexdigest()[:16]
    result.snapshot = ConfigSnapshot(
        providers=providers,
        routes=routes,
        version=version,
        files=dict(result.files),
        loaded_at=time.time(),
        directory=str(root),
        warnings=tuple(diags.warnings),
    )
    return result


def _read(file: FsPath, doc: _Doc, result: BuildResult) -> str | None:
    try:
        raw = file.read_bytes()
    except OSError as exc:
        doc.report((), "E002", f"cannot read: {exc.strerror}")
        return None
    result.files[doc.rel] = hashlib.sha256(raw).hexdigest()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        doc.report((), "E002", "not UTF-8 text")
        return None


def _env_name(provider_id: str) -> str:
    return provider_id.upper().replace("-", "_")
