"""`pixgate serve | lint`: the command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .config.loader import build_snapshot
from .settings import Settings


def bundled_config_dir() -> Path:
    """The shipped config: the repository root in a checkout, else the installed copy."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "routes.yaml").is_file() and (checkout / "providers.d").is_dir():
        return checkout
    return Path(__file__).resolve().parent / "bundled"


def resolve_config_dir(explicit: str | None) -> tuple[Path, bool]:
    """(directory, embedded): the given one, else the current one, else the embedded default."""
    if explicit:
        return Path(explicit), False
    env = os.environ.get("PIXGATE_CONFIG")
    if env:
        return Path(env), False
    if Path("routes.yaml").is_file():
        return Path("."), False
    return _embedded(), True


def _embedded() -> Path:
    base = bundled_config_dir()
    if (base / "providers.d").is_dir():
        return base
    # An installed wheel keeps providers.d/ as the `providers` package folder; give it its name.
    import tempfile

    target = Path(tempfile.mkdtemp(prefix="pixgate-config-"))
    (target / "providers.d").mkdir()
    (target / "routes.yaml").write_bytes((base / "routes.yaml").read_bytes())
    for item in (base / "providers").iterdir():
        if item.suffix in (".yaml", ".yml"):
            (target / "providers.d" / item.name).write_bytes(item.read_bytes())
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pixgate", description="OpenAI-compatible image gateway")
    parser.add_argument("--version", action="version", version=f"pixgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument(
        "--config",
        help="directory with routes.yaml and providers.d/ "
        "(env PIXGATE_CONFIG; default: current directory, else the embedded demo)",
    )
    serve.add_argument("--host", help="bind address (env PIXGATE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (env PIXGATE_PORT, default 8080)")
    serve.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="allow serving a non-loopback address without PIXGATE_API_KEYS",
    )
    serve.add_argument(
        "--no-watch",
        action="store_true",
        help="do not reload on config file changes (SIGHUP still reloads)",
    )
    serve.add_argument("--log-level", default=os.environ.get("PIXGATE_LOG_LEVEL", "INFO"))

    lint = sub.add_parser("lint", help="validate a config directory")
    lint.add_argument("directory", nargs="?", default=None)
    lint.add_argument("--format", choices=["text", "json"], default="text")

    test = sub.add_parser("test", help="replay golden cases against a local fake upstream")
    test.add_argument("directory", nargs="?", default=".", help="config directory")
    test.add_argument("providers", nargs="*", help="provider ids (default: all with cases)")
    test.add_argument("--cases", help="cases folder (default: DIR/tests/providers)")
    test.add_argument("-v", "--verbose", action="store_true")

    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "test":
        from .testing import main as run_golden

        return run_golden(
            args.directory, args.providers, cases_dir=args.cases, verbose=args.verbose
        )
    return _lint(args)


def _lint(args: argparse.Namespace) -> int:
    import json

    directory = Path(args.directory) if args.directory else resolve_config_dir(None)[0]
    result = build_snapshot(directory)
    diags = result.diagnostics.sorted()
    if args.format == "json":
        print(json.dumps({"ok": result.ok, "diagnostics": [d.as_dict() for d in diags]}, indent=2))
    else:
        for diag in diags:
            print(diag.format())
        errors, warnings = len(result.diagnostics.errors), len(result.diagnostics.warnings)
        if result.snapshot is not None:
            print(
                f"ok: {len(result.snapshot.providers)} providers, "
                f"{len(result.snapshot.routes.routes)} routes, {warnings} warnings "
                f"(config version {result.snapshot.version})",
                file=sys.stderr,
            )
        else:
            print(f"failed: {errors} errors, {warnings} warnings", file=sys.stderr)
    return 0 if result.ok else 1


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from .app import ConfigError, create_app

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    config_dir, embedded = resolve_config_dir(args.config)
    settings = Settings.from_env(
        config_dir=config_dir,
        host=args.host,
        port=args.port,
        allow_anonymous=args.allow_anonymous or None,
        watch=False if args.no_watch or embedded else None,
    )
    problem = settings.exposure_problem()
    if problem:
        print(f"pixgate: {problem}", file=sys.stderr)
        return 2
    try:
        app = create_app(settings)
    except ConfigError as exc:
        print(f"pixgate: config in {config_dir} does not build:", file=sys.stderr)
        for line in exc.diagnostics:
            print(f"  {line}", file=sys.stderr)
        return 1
    where = "the embedded demo config" if embedded else str(config_dir.resolve())
    logging.getLogger("pixgate").info(
        "serving %s on http://%s:%d", where, settings.host, settings.port
    )
    web.run_app(app, host=settings.host, port=settings.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
