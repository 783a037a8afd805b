"""Golden provider cases: replay "client request -> upstream exchanges -> client response" over
real sockets, against a gateway built from one provider file.

A case file (``tests/providers/<provider-id>/<case>.yaml``, schema ``schemas/golden.schema.json``)
gives the client request, the upstream requests the gateway must send (each with a canned answer
from a fake upstream) and the response the client must get. For each case :func:`run_case`:

1. starts a :class:`~engine.testing.fakeserver.FakeUpstream` on 127.0.0.1 (free port);
2. builds a temporary config dir holding only ``providers.d/<id>.yaml`` (copied from the config
   dir) and a generated ``routes.yaml`` with one route per model of that provider (route name ==
   upstream model name, ``demo: false``);
3. builds the gateway with ``Settings.from_env`` from a clean environment:
   ``<ID>_BASE_URL`` = fake URL + ``base_path``, ``PIXGATE_POLL_INTERVAL_SCALE=0.01`` and the
   case's ``env`` (the caller's environment never leaks in), and serves it on 127.0.0.1;
4. sends the client request, checks the status, headers, JSON, error shape and images
   (b64_json decoded, urls downloaded; sizes checked with Pillow), and that every expected
   exchange was used;
5. tears everything down, within a hard per-case timeout.

This module does not depend on pytest: ``pixgate test`` and ``tests/test_golden.py`` both use it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import io
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import yaml
from aiohttp import web
from PIL import Image, UnidentifiedImageError

from ..app import ConfigError, create_app
from ..settings import Settings
from .cases import (
    CaseFileError,
    ExpectedImage,
    ExpectedResponse,
    GoldenCase,
    discover_cases,
    load_case,
    load_cases,
)
from .fakeserver import RUNNER_HEADER, RUNNER_VALUE, FakeUpstream
from .match import compare, compare_headers, describe, substitute

__all__ = [
    "CaseFileError",
    "CaseResult",
    "GoldenCase",
    "default_cases_dir",
    "discover_cases",
    "env_prefix",
    "format_result",
    "load_case",
    "load_cases",
    "main",
    "run_case",
    "run_cases",
]

POLL_SCALE = "0.01"
CLEANUP_TIMEOUT = 5.0
_FORMATS = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "GIF": "gif"}


@dataclass(slots=True)
class CaseResult:
    """The outcome of one case. `passed`: no problems. `ok`: what the case expects (xfail)."""

    case: GoldenCase
    problems: list[str] = field(default_factory=list)
    duration: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def ok(self) -> bool:
        """Passed, or failed while marked xfail."""
        return self.passed != (self.case.xfail is not None)

    @property
    def outcome(self) -> str:
        if self.case.xfail is not None:
            return "XPASS" if self.passed else "XFAIL"
        return "PASS" if self.passed else "FAIL"


def env_prefix(provider_id: str) -> str:
    """`huggingface-space` -> `HUGGINGFACE_SPACE` (as the provider files' ${..._BASE_URL})."""
    return provider_id.upper().replace("-", "_")


def format_result(result: CaseResult) -> str:
    """A readable report of one result: the outcome line and every problem, indented."""
    case = result.case
    head = f"{result.outcome} {case.id} ({result.duration:.2f}s): {case.description}"
    if case.xfail is not None:
        head += f"\n  xfail: {case.xfail}"
    lines = [head, f"  file: {case.path}"] if result.problems else [head]
    for problem in result.problems:
        first, *rest = problem.split("\n")
        lines.append(f"  * {first}")
        lines += [f"    {line}" for line in rest]
    return "\n".join(lines)


def default_cases_dir(config_dir: str | Path) -> Path:
    """Where a config dir keeps its golden cases: ``<config_dir>/tests/providers``."""
    return Path(config_dir) / "tests" / "providers"


def main(
    config_dir: str | Path,
    providers: Sequence[str] = (),
    *,
    cases_dir: str | Path | None = None,
    concurrency: int = 1,
    verbose: bool = False,
    out: TextIO | None = None,
) -> int:
    """What ``pixgate test DIR [PROVIDER...]`` does: load, run, print; the exit status.

    0: every case as expected (xfail cases failing); 1: some case not; 2: invalid case files.
    The last line is ``N passed, N failed`` (plus xfailed/xpassed counts when there are any).
    """
    stream = out if out is not None else sys.stdout
    where = Path(cases_dir) if cases_dir is not None else default_cases_dir(config_dir)
    try:
        cases = load_cases(where, list(providers) or None)
    except CaseFileError as exc:
        print(f"invalid golden cases:\n{exc}", file=stream)
        return 2
    if not cases:
        print(f"no golden cases under {where}", file=stream)
        return 2
    results = asyncio.run(run_cases(config_dir, cases, concurrency=concurrency))
    for result in results:
        if verbose or not result.ok:
            print(format_result(result), file=stream)
    counts = {k: sum(r.outcome == k for r in results) for k in ("PASS", "FAIL", "XFAIL", "XPASS")}
    summary = f"{counts['PASS']} passed, {counts['FAIL'] + counts['XPASS']} failed"
    if counts["XFAIL"]:
        summary += f", {counts['XFAIL']} xfailed"
    if counts["XPASS"]:
        summary += f" ({counts['XPASS']} xpassed)"
    print(summary, file=stream)
    return 0 if all(r.ok for r in results) else 1


async def run_cases(
    config_dir: str | Path, cases: Iterable[GoldenCase], *, concurrency: int = 1
) -> list[CaseResult]:
    """Run cases (at most `concurrency` at a time); results in the order given."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(case: GoldenCase) -> CaseResult:
        async with gate:
            return await run_case(config_dir, case)

    return list(await asyncio.gather(*(one(c) for c in cases)))


async def run_case(config_dir: str | Path, case: GoldenCase) -> CaseResult:
    """Replay one case against a fresh gateway and fake upstream; never raises for a failure."""
    started = time.monotonic()
    result = CaseResult(case)
    problems: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="pixgate-golden-"))
    fake = FakeUpstream(case.exchanges, case.files, case.unordered)
    gateway: web.AppRunner | None = None
    session: aiohttp.ClientSession | None = None
    try:
        async with asyncio.timeout(case.timeout):
            upstream = await fake.start()
            config = _write_config(Path(config_dir), case, tmp / "config")
            settings = Settings.from_env(
                _environment(case, upstream), **_settings_overrides(config, tmp / "files")
            )
            gateway = web.AppRunner(
                create_app(settings), handle_signals=False, access_log=None, shutdown_timeout=1.0
            )
            await gateway.setup()
            await web.TCPSite(gateway, "127.0.0.1", 0).start()
            host, port = gateway.addresses[0][:2]
            fake.urls["gateway"] = f"http://{host}:{port}"
            session = aiohttp.ClientSession()
            await _exchange(session, fake.urls, case, problems)
    except TimeoutError:
        problems.append(f"the case did not finish within {case.timeout:g}s (hard timeout)")
    except _SetupError as exc:
        problems.append(str(exc))
    except ConfigError as exc:
        lines = "\n".join(f"  {d}" for d in exc.diagnostics)
        problems.append(f"the generated gateway config does not build:\n{lines}")
    except (aiohttp.ClientError, OSError) as exc:
        problems.append(f"talking to the gateway failed: {exc.__class__.__name__}: {exc}")
    except Exception:
        problems.append("the runner crashed:\n" + traceback.format_exc().rstrip())
    finally:
        await _cleanup(session, gateway, fake)
        shutil.rmtree(tmp, ignore_errors=True)
    result.problems = [*fake.problems, *problems]
    unused = fake.unused()
    if unused:
        listed = "\n".join(f"  - {case.exchanges[i].label(i)}" for i in unused)
        result.problems.append(
            f"{len(unused)} of {len(case.exchanges)} expected exchanges never happened:\n{listed}"
        )
    result.duration = time.monotonic() - started
    return result


class _SetupError(Exception):
    """The case cannot be set up (missing provider file...): reported as a problem."""


def _settings_overrides(config: Path, storage: Path) -> dict[str, object]:
    overrides: dict[str, object] = {
        "config_dir": config,
        "storage_dir": storage,
        "host": "127.0.0.1",
        "port": 0,
    }
    if "watch" in {f.name for f in dataclasses.fields(Settings)}:
        overrides["watch"] = False  # the temporary config never changes: no file watcher
    return overrides


def _environment(case: GoldenCase, upstream: str) -> dict[str, str]:
    env = {"PIXGATE_POLL_INTERVAL_SCALE": POLL_SCALE, **case.env}
    env[f"{env_prefix(case.provider)}_BASE_URL"] = upstream + case.base_path
    return env


def _write_config(config_dir: Path, case: GoldenCase, target: Path) -> Path:
    """A config dir with only the case's provider file and one route per model of it."""
    source = next(
        (
            config_dir / "providers.d" / f"{case.provider}{suffix}"
            for suffix in (".yaml", ".yml")
            if (config_dir / "providers.d" / f"{case.provider}{suffix}").is_file()
        ),
        None,
    )
    if source is None:
        raise _SetupError(
            f"no provider file {config_dir / 'providers.d' / case.provider}.yaml for this case"
        )
    try:
        doc = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _SetupError(f"cannot read {source}: {exc}") from None
    models = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(models, dict) or not models:
        raise _SetupError(f"{source} declares no models")
    routes: dict[str, Any] = {}
    for name in models:
        route: dict[str, Any] = {"targets": [{"provider": case.provider, "model": str(name)}]}
        if case.route_timeout is not None:
            route["timeout"] = case.route_timeout
        routes[str(name)] = route
    (target / "providers.d").mkdir(parents=True)
    shutil.copyfile(source, target / "providers.d" / source.name)
    routes_doc = {"demo": False, "routes": routes}
    (target / "routes.yaml").write_text(
        "# generated by engine.testing.golden\n" + yaml.safe_dump(routes_doc, sort_keys=False),
        encoding="utf-8",
    )
    return target


async def _exchange(
    session: aiohttp.ClientSession, urls: Mapping[str, str], case: GoldenCase, problems: list[str]
) -> None:
    """Send the client request and check the response."""
    req = case.request
    data: bytes | None = None
    headers = {k: str(substitute(v, urls)) for k, v in req.headers.items()}
    if req.has_json:
        data = json.dumps(substitute(req.json, urls), ensure_ascii=False).encode("utf-8")
        headers.setdefault("Content-Type", "application/json")
    elif req.text is not None:
        data = req.text.encode("utf-8")
    async with session.request(
        req.method, urls["gateway"] + req.path, data=data, headers=headers
    ) as resp:
        raw = await resp.read()
        status = resp.status
        got_headers = {k.lower(): v for k, v in resp.headers.items()}
    await _check_response(session, urls, case.response, status, got_headers, raw, problems)


async def _check_response(
    session: aiohttp.ClientSession,
    urls: Mapping[str, str],
    expected: ExpectedResponse,
    status: int,
    headers: dict[str, str],
    raw: bytes,
    problems: list[str],
) -> None:
    body: Any = None
    parsed = False
    try:
        body = json.loads(raw) if raw else None
        parsed = True
    except ValueError:
        pass
    shown = describe(body if parsed else raw[:300].decode("utf-8", errors="replace"), 500)
    if status != expected.status:
        # The rest of the body would only differ as a consequence: say it once.
        problems.append(f"response.status: expected {expected.status}, got {status}: {shown}")
        return
    compare_headers(substitute(expected.headers, urls), headers, "response.headers", problems)
    needs_json = expected.has_json or expected.error is not None or expected.images is not None
    if needs_json and not parsed:
        problems.append(f"response: the body is not JSON: {shown}")
        return
    if expected.has_json:
        compare(substitute(expected.json, urls), body, "response.json", problems, exact=False)
    if expected.error is not None:
        _check_error(expected, body, problems)
    if expected.images is not None:
        await _check_images(session, urls, expected.images, body, problems)


def _check_error(expected: ExpectedResponse, body: Any, problems: list[str]) -> None:
    assert expected.error is not None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        problems.append(f"response.error: expected an OpenAI error body, got {describe(body)}")
        return
    missing = [k for k in ("message", "type", "param", "code") if k not in error]
    if missing:
        problems.append(
            f"response.error: not the OpenAI error shape, missing {', '.join(missing)}: "
            f"{describe(error)}"
        )
    if not isinstance(error.get("message"), str) or not isinstance(error.get("type"), str):
        problems.append(f"response.error: message and type must be strings: {describe(error)}")
    for key, value in expected.error.exact.items():
        compare(value, error.get(key), f"response.error.{key}", problems, exact=True)
    needle = expected.error.message_contains
    message = error.get("message")
    if needle is not None and (not isinstance(message, str) or needle not in message):
        problems.append(
            f"response.error.message: expected it to contain {describe(needle)}, "
            f"got {describe(message, 400)}"
        )


async def _check_images(
    session: aiohttp.ClientSession,
    urls: Mapping[str, str],
    expected: Sequence[ExpectedImage],
    body: Any,
    problems: list[str],
) -> None:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        problems.append(f"response.images: expected a data list, got {describe(body)}")
        return
    if len(data) != len(expected):
        problems.append(f"response.images: expected {len(expected)} images, got {len(data)}")
    for i, (want, item) in enumerate(zip(expected, data, strict=False)):
        where = f"response.data[{i}]"
        try:
            blob = await _image_bytes(session, urls, item)
        except _ImageError as exc:
            problems.append(f"{where}: {exc}")
            continue
        try:
            with Image.open(io.BytesIO(blob)) as img:
                img.load()
                size, fmt = img.size, _FORMATS.get(img.format or "", img.format)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            problems.append(f"{where}: not a decodable image ({len(blob)} bytes): {exc}")
            continue
        if want.width is not None and size[0] != want.width:
            problems.append(f"{where}: expected width {want.width}, got {size[0]}")
        if want.height is not None and size[1] != want.height:
            problems.append(f"{where}: expected height {want.height}, got {size[1]}")
        if want.format is not None and fmt != want.format:
            problems.append(f"{where}: expected format {want.format}, got {fmt}")


class _ImageError(Exception):
    pass


async def _image_bytes(session: aiohttp.ClientSession, urls: Mapping[str, str], item: Any) -> bytes:
    if not isinstance(item, dict):
        raise _ImageError(f"expected an object with b64_json or url, got {describe(item)}")
    if isinstance(item.get("b64_json"), str):
        try:
            return base64.b64decode(item["b64_json"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _ImageError(f"b64_json is not valid base64: {exc}") from None
    url = item.get("url")
    if not isinstance(url, str):
        raise _ImageError(f"expected b64_json or url, got {describe(item)}")
    headers = {RUNNER_HEADER: RUNNER_VALUE} if url.startswith(urls["upstream"] + "/") else None
    try:
        async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(10)) as resp:
            blob = await resp.read()
            if resp.status != 200:
                text = blob[:300].decode("utf-8", errors="replace")
                raise _ImageError(f"downloading {url} failed: HTTP {resp.status}: {text}")
            return blob
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _ImageError(f"downloading {url} failed: {exc.__class__.__name__}: {exc}") from None


async def _cleanup(
    session: aiohttp.ClientSession | None, gateway: web.AppRunner | None, fake: FakeUpstream
) -> None:
    """Close everything, each step bounded, whatever state the case stopped in."""
    if session is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.close(), CLEANUP_TIMEOUT)
    fake.wake()  # a gateway handler waiting on a delayed answer can then finish
    if gateway is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(gateway.cleanup(), CLEANUP_TIMEOUT)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(fake.close(), CLEANUP_TIMEOUT)
