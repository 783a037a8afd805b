"""Build one immutable config snapshot from a directory: parse, interpolate, validate, compile.

`pixgate lint`, `pixgate serve` and hot reload all go through `build_snapshot`, so what lint
accepts is exactly what serve runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from ..clients.compile import compile_clients, unpriced_names
from ..clients.spec import Clients
from ..dsl.provider import compile_provider
from ..dsl.regex_examples import examples
from ..dsl.routes import compile_routes
from ..dsl.spec import ProviderSpec, RouteSpec, RoutesSpec, TargetSpec
from ..storage.config import StorageConfig, compile_storage
from .diagnostics import Diagnostic, Diagnostics, format_path
from .interpolate import interpolate_tree
from .schemas import validate
from .yamlpos import Located, YamlSyntaxError, load_located

Path = tuple[str | int, ...]
PROVIDER_GLOBS = ("*.yaml", "*.yml")


# Warnings that only say a provider has no keys (and so what it cannot serve).
NO_KEY_CODES = frozenset({"W401", "W402", "W405"})


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    """Everything a request reads from config. Never mutated; a reload builds a new one."""

    providers: dict[str, ProviderSpec]
    routes: RoutesSpec
    version: str
    files: dict[str, str]
    loaded_at: float
    directory: str
    direct: dict[str, RouteSpec] = field(default_factory=dict)
    warnings: tuple[Diagnostic, ...] = ()
    # Derived once here, not per request: each route with its fallbacks, and the providers
    # whose key_pattern a relayed client key is matched against, in id order.
    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    relay_order: tuple[ProviderSpec, ...] = ()
    clients: Clients = field(default_factory=Clients)  # clients.yaml: keys, models, limits
    storage: StorageConfig = field(default_factory=StorageConfig)

    def usable(self, provider: ProviderSpec) -> bool:
        """Routable now: has keys (or needs none), and is not the demo while it is off."""
        return provider.available and (self.routes.demo or not provider.on_gateway)

    def resolve_model(self, name: str) -> str | None:
        """Route name for a client-facing model name (route or alias)."""
        if name in self.routes.routes or name in self.direct:
            return name
        return self.routes.aliases.get(name)

    def route(self, name: str) -> RouteSpec:
        return self.routes.routes.get(name) or self.direct[name]

    def chain(self, first: str) -> tuple[str, ...]:
        """The route and its fallbacks, breadth first, each once."""
        return self.chains.get(first) or (first,)

    def warning_lines(self) -> list[str]:
        """The warnings as log lines, with every consequence of providers having no keys
        (W401, W402, W405: several per provider on a keyless first start) folded into one."""
        lines = [d.format() for d in self.warnings if d.code not in NO_KEY_CODES]
        keyless = sorted(p.id for p in self.providers.values() if not p.available)
        if keyless:
            lines.append(
                f"{len(keyless)} provider{'s' if len(keyless) > 1 else ''} have no keys and "
                f"are skipped: {', '.join(keyless)}; `pixgate lint` for details"
            )
        return lines

    def relay_provider(self, token: str) -> ProviderSpec | None:
        """The provider whose key_pattern recognises a client's token (first by id)."""
        for provider in self.relay_order:
            assert provider.auth.key_pattern is not None
            if provider.auth.key_pattern.search(token):
                return provider
        return None


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


def _chain(routes: dict[str, RouteSpec], first: str) -> tuple[str, ...]:
    """`first` and its fallbacks, breadth first, each once (fallback cycles are cut)."""
    seen: list[str] = []
    queue = [first]
    while queue:
        name = queue.pop(0)
        if name not in seen and name in routes:
            seen.append(name)
            queue.extend(routes[name].fallbacks)
    return tuple(seen)


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
    broken: set[str] = set()  # providers defined in providers.d/ that did not build
    provider_docs: dict[str, _Doc] = {}
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
                provider_docs[spec.id] = doc
        if doc.failed:  # its own diagnostics say why; routes naming it get no follow-on E301
            broken.update({file.stem, str((data or {}).get("id", file.stem))})
        failed = failed or doc.failed

    routes_file = root / "routes.yaml"
    routes_doc = _Doc("routes.yaml", diags)
    routes: RoutesSpec | None = None
    storage = StorageConfig()
    if not routes_file.is_file():
        diags.add(Diagnostic("routes.yaml", 1, 1, "E002", "", f"not found in {root}"))
        failed = True
    else:
        text = _read(routes_file, routes_doc, result)
        data = routes_doc.load(text, "routes", env) if text is not None else None
        if data is not None:
            routes = compile_routes(
                data, providers, routes_doc.report, broken=broken - providers.keys()
            )
            _apply_keys_files(root, routes, providers, routes_doc, result)
            _check_keys(providers, provider_docs, routes, env, routes_doc)
            _check_direct_names(providers, routes, routes_doc)
            storage = compile_storage(data.get("storage"), env, routes_doc.report)
        failed = failed or routes_doc.failed
    clients = Clients()
    if routes is not None:
        clients, clients_failed = _load_clients(root, routes, providers, env, result)
        failed = failed or clients_failed
    if failed or routes is None:
        return result
    version = hashlib.sha256(
        "\n".join(f"{name}:{digest}" for name, digest in sorted(result.files.items())).encode()
    ).hexdigest()[:16]
    result.snapshot = ConfigSnapshot(
        providers=providers,
        routes=routes,
        direct=_direct_routes(providers) if routes.direct_models else {},
        chains={name: _chain(routes.routes, name) for name in routes.routes},
        relay_order=tuple(
            providers[pid] for pid in sorted(providers) if providers[pid].auth.key_pattern
        ),
        clients=clients,
        storage=storage,
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


def _apply_keys_files(
    root: FsPath,
    routes: RoutesSpec,
    providers: dict[str, ProviderSpec],
    doc: _Doc,
    result: BuildResult,
) -> None:
    """Merge each provider's keys file (one key per line) into its pool."""
    for pid, policy in routes.policies.items():
        if not policy.keys_file or pid not in providers:
            continue
        path = FsPath(policy.keys_file)
        path = path if path.is_absolute() else root / path
        try:
            raw = path.read_bytes()
        except OSError as exc:
            doc.report(
                ("providers", pid, "keys_file"), "E105", f"cannot read {path}: {exc.strerror}"
            )
            continue
        result.files[f"secret:{pid}"] = hashlib.sha256(raw).hexdigest()
        lines = raw.decode("utf-8", errors="replace").splitlines()
        extra = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        spec = providers[pid]
        keys = tuple(dict.fromkeys((*spec.auth.keys, *extra)))
        providers[pid] = dataclasses.replace(spec, auth=dataclasses.replace(spec.auth, keys=keys))


def _check_keys(
    providers: dict[str, ProviderSpec],
    docs: dict[str, _Doc],
    routes: RoutesSpec,
    env: Mapping[str, str],
    routes_doc: _Doc,
) -> None:
    """Warn about unusable providers, and about keys that relay mode would misread."""
    for pid, spec in providers.items():
        if not spec.available:
            docs[pid].report(
                ("auth", "keys"),
                "W401",
                f"no keys configured (set {_env_name(pid)}_API_KEYS); provider is unavailable",
            )
    patterns = [
        (pid, p.auth.key_pattern) for pid, p in sorted(providers.items()) if p.auth.key_pattern
    ]
    for i, (first, pat_a) in enumerate(patterns):
        for second, pat_b in patterns[i + 1 :]:
            both = [e for e in examples(pat_a.pattern) if pat_b.search(e)]
            both += [e for e in examples(pat_b.pattern) if pat_a.search(e)]
            if both:
                docs[second].report(
                    ("auth", "key_pattern"),
                    "W404",
                    f"overlaps the key_pattern of '{first}' (both match e.g. {both[0][:12]}…); "
                    f"relay mode checks providers in id order, so '{first}' wins",
                )
    for key in (k.strip() for k in env.get("PIXGATE_API_KEYS", "").split(",")):
        for pid, pattern in patterns:
            if key and pattern.search(key):
                routes_doc.report(
                    (),
                    "W403",
                    f"a key in PIXGATE_API_KEYS also matches provider '{pid}' key_pattern; "
                    "it is treated as a gateway key, never relayed",
                )


def _direct_routes(providers: dict[str, ProviderSpec]) -> dict[str, RouteSpec]:
    """`provider/model` names a client may use directly, one single-target route each."""
    return {
        f"{pid}/{model}": RouteSpec(
            name=f"{pid}/{model}", targets=(TargetSpec(provider=pid, model=model),)
        )
        for pid, spec in providers.items()
        for model in spec.models
    }


def _check_direct_names(providers: dict[str, ProviderSpec], routes: RoutesSpec, doc: _Doc) -> None:
    """A route or alias named like `provider/model` would shadow that direct name."""
    if not routes.direct_models:
        return
    for section, names in (("routes", routes.routes), ("aliases", routes.aliases)):
        for name in names:
            pid, _, model = name.partition("/")
            if pid in providers and model in providers[pid].models:
                doc.report(
                    (section, name),
                    "E303",
                    f"'{name}' is also the direct name of provider '{pid}' model '{model}'; "
                    "rename it or set direct_models: false",
                )


def _load_clients(
    root: FsPath,
    routes: RoutesSpec,
    providers: dict[str, ProviderSpec],
    env: Mapping[str, str],
    result: BuildResult,
) -> tuple[Clients, bool]:
    """clients.yaml, when the directory has one: (clients, whether it failed)."""
    file = root / "clients.yaml"
    if not file.is_file():
        return Clients(), False
    doc = _Doc("clients.yaml", result.diagnostics)
    text = _read(file, doc, result)
    data = doc.load(text, "clients", env) if text is not None else None
    if data is None or doc.located is None:
        return Clients(), True
    names = [*routes.routes, *routes.aliases]
    if routes.direct_models:
        names += [f"{pid}/{m}" for pid, p in providers.items() for m in p.models]
    clients = compile_clients(
        data, doc.located.data, names, doc.report, unpriced_names(routes, providers)
    )
    return clients, doc.failed
