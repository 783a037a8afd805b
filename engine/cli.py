"""`pixgate serve | lint | test | explain`: the command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__, logsetup
from .config.loader import build_snapshot
from .settings import Settings


def bundled_config_dir() -> Path:
    """The shipped config: the repository root in a checkout, else the installed copy (the
    wheel carries routes.yaml and providers.d/ as engine/bundled/, used where they lie)."""
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
    return bundled_config_dir(), True


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
    serve.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("PIXGATE_WORKERS") or 1),
        help="worker processes sharing the port with SO_REUSEPORT (env PIXGATE_WORKERS, default 1)",
    )
    serve.add_argument("--log-level", default=os.environ.get("PIXGATE_LOG_LEVEL", "INFO"))

    lint = sub.add_parser("lint", help="validate a config directory")
    lint.add_argument("directory", nargs="?", default=None)
    lint.add_argument(
        "--format",
        choices=["text", "json", "github"],
        default="text",
        help="text (file:line:col CODE path: message), json, or github "
        "(GitHub Actions ::error/::warning workflow commands, shown inline on pull requests)",
    )

    test = sub.add_parser("test", help="replay golden cases against a local fake upstream")
    test.add_argument("directory", nargs="?", default=".", help="config directory")
    test.add_argument("providers", nargs="*", help="provider ids (default: all with cases)")
    test.add_argument("--cases", help="cases folder (default: DIR/tests/providers)")
    test.add_argument("-v", "--verbose", action="store_true")

    doctor = sub.add_parser(
        "doctor", help="check the config, and that storage is reachable and writable (online)"
    )
    doctor.add_argument("directory", nargs="?", default=None)

    _add_explain(sub)

    key = sub.add_parser("key", help="client keys for clients.yaml")
    key.add_argument("action", choices=["new"], help="new: print a fresh key and its digest")

    args = parser.parse_args(argv)
    if args.command == "key":
        from .clients.keygen import new_key

        print(new_key())
        return 0
    if args.command == "serve":
        return _serve(args)
    if args.command == "explain":
        return _explain(args)
    if args.command == "doctor":
        return _doctor(args)
    if args.command == "test":
        from .testing import main as run_golden

        return run_golden(
            args.directory, args.providers, cases_dir=args.cases, verbose=args.verbose
        )
    return _lint(args)


def _lint(args: argparse.Namespace) -> int:
    from .tools import lintformat

    directory = Path(args.directory) if args.directory else resolve_config_dir(None)[0]
    result = build_snapshot(directory)
    diags = result.diagnostics.sorted()
    if args.format == "json":
        print(lintformat.json_report(result))
        return 0 if result.ok else 1
    if args.format == "github":
        for line in lintformat.github_lines(diags, directory):
            print(line)
    else:
        for diag in diags:
            print(diag.format())
    print(lintformat.summary(result), file=sys.stderr)
    return 0 if result.ok else 1


def _doctor(args: argparse.Namespace) -> int:
    """Lint, then the online checks: one line each, exit 1 when any fails."""
    from .storage.doctor import check_storage

    directory = Path(args.directory) if args.directory else resolve_config_dir(None)[0]
    result = build_snapshot(directory)
    for diag in result.diagnostics.sorted():
        print(diag.format())
    if result.snapshot is None:
        print("config: does not build (see above)")
        return 1
    print(f"config: ok (version {result.snapshot.version})")
    try:
        storage_dir = Settings.from_env().storage_dir
    except ValueError as exc:  # a PIXGATE_* value out of range: one line, as serve says it
        print(f"pixgate: {exc}", file=sys.stderr)
        return 2
    ok, line = asyncio.run(check_storage(result.snapshot.storage, storage_dir))
    print(line)
    return 0 if ok else 1


def _add_explain(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .dsl.spec import TASKS

    explain = sub.add_parser(
        "explain",
        help="dry-run one image request: route, attempts, rendered upstream requests",
        description="Show what serve would do with one request, without sending anything: "
        "the route, every target in or out and why, the size mapping, and the first "
        "attempt's upstream HTTP requests (keys masked). Exit 0: it can be served; "
        "1: the config does not build; 2: unknown model or nothing can serve it.",
    )
    explain.add_argument("directory", nargs="?", default=None, help="config directory")
    explain.add_argument("--model", help="model name a client sends (default: the default route)")
    explain.add_argument("--prompt", required=True)
    explain.add_argument("--size", help="WxH or auto (default auto)")
    explain.add_argument("--n", type=int, default=1, help="images (1-10, default 1)")
    explain.add_argument("--task", choices=TASKS, default="generate")
    explain.add_argument(
        "--image", action="append", default=[], metavar="FILE", help="input image (repeatable)"
    )
    explain.add_argument("--mask", metavar="FILE", help="mask image (edit)")
    explain.add_argument("--seed", type=int)
    explain.add_argument("--negative-prompt")
    explain.add_argument("--quality")
    explain.add_argument("--style")
    explain.add_argument(
        "--response-format",
        choices=["url", "b64_json"],
        help="as a client would name it (default: the route's or model's default, else url)",
    )
    explain.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another request field, read by templates as extra.NAME (VALUE parsed as JSON "
        "when it is valid JSON, else text); repeatable",
    )
    explain.add_argument(
        "--all",
        action="store_true",
        help="render the requests of every attempt, not only the first",
    )
    explain.add_argument("--format", choices=["text", "json"], default="text")


def _explain(args: argparse.Namespace) -> int:
    import json

    from .api.params import MAX_N
    from .dsl.sizes import parse_size
    from .runtime.job import ImageJob, InputImage
    from .tools import explain

    def usage(message: str) -> int:
        print(f"pixgate explain: {message}", file=sys.stderr)
        return 2

    size: tuple[int, int] | None = None
    if args.size and args.size != "auto":
        try:
            size = parse_size(args.size)
        except ValueError as exc:
            return usage(str(exc))
    if not 1 <= args.n <= MAX_N:
        return usage(f"--n must be between 1 and {MAX_N}")
    extra: dict[str, object] = {}
    for item in args.extra:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            return usage(f"--extra expects NAME=VALUE, got {item!r}")
        try:
            extra[name] = json.loads(raw)
        except ValueError:
            extra[name] = raw
    images: list[InputImage] = []
    shown: list[dict[str, object]] = []
    mask: InputImage | None = None
    try:
        for file in args.image:
            images.append(explain.load_image(file))
            shown.append({"file": file, "mime": images[-1].mime, "bytes": len(images[-1].data)})
        if args.mask:
            mask = explain.load_image(args.mask)
    except (OSError, ValueError) as exc:
        return usage(str(exc))
    job = ImageJob(
        task=args.task,
        prompt=args.prompt,
        model=args.model,
        n=args.n,
        size=size,
        quality=args.quality,
        style=args.style,
        seed=args.seed,
        negative_prompt=args.negative_prompt,
        response_format=args.response_format,
        images=images,
        mask=mask,
        extra=extra,
    )
    directory = Path(args.directory) if args.directory else resolve_config_dir(None)[0]
    result = explain.explain(directory, job, render_all=args.all, images=shown)
    print(explain.FORMATTERS[args.format](result))
    return result.exit_code


def _serve(args: argparse.Namespace) -> int:
    from .app import ConfigError, load_config
    from .eventloop import loop_factory
    from .serving import serve

    logsetup.configure(args.log_level)
    config_dir, embedded = resolve_config_dir(args.config)
    try:
        settings = Settings.from_env(
            config_dir=config_dir,
            host=args.host,
            port=args.port,
            allow_anonymous=args.allow_anonymous or None,
            watch=False if args.no_watch or embedded else None,
        )
    except ValueError as exc:  # a PIXGATE_* value out of range: one line, no traceback
        print(f"pixgate: {exc}", file=sys.stderr)
        return 2
    try:
        loop_factory(settings.event_loop)
    except ValueError as exc:
        print(f"pixgate: {exc}", file=sys.stderr)
        return 2
    try:
        snapshot = load_config(settings)  # fail here, once, before any worker starts
    except ConfigError as exc:
        print(f"pixgate: config in {config_dir} does not build:", file=sys.stderr)
        for line in exc.diagnostics:
            print(f"  {line}", file=sys.stderr)
        return 1
    from .state import StateConfigError, redis_config

    try:
        redis_config(settings.env, snapshot.routes.state)
    except (StateConfigError, ValueError) as exc:
        print(f"pixgate: {exc}", file=sys.stderr)
        return 2
    problem = settings.exposure_problem(has_clients=bool(snapshot.clients))
    if problem:
        print(f"pixgate: {problem}", file=sys.stderr)
        return 2
    where = "the embedded demo config" if embedded else str(config_dir.resolve())
    logging.getLogger("pixgate").info(
        "serving %s on http://%s:%d", where, settings.host, settings.port
    )
    return serve(settings, max(1, args.workers), snapshot)


if __name__ == "__main__":
    raise SystemExit(main())
