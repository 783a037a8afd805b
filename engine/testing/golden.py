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

The config dir and environment of step 2-3 come from :mod:`~engine.testing.sandbox`, the
request and checks of step 4 from :mod:`~engine.testing.client`.

This module does not depend on pytest: ``pixgate test`` and ``tests/test_golden.py`` both use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import aiohttp
from aiohttp import web

from ..app import ConfigError, create_app
from ..settings import Settings
from .cases import (
    CaseFileError,
    GoldenCase,
    load_cases,
)
from .client import exchange
from .fakeserver import FakeUpstream
from .sandbox import SetupError, environment, settings_overrides, write_config

__all__ = [  # the runner; case files live in .cases, the scratch config in .sandbox
    "CaseResult",
    "default_cases_dir",
    "format_result",
    "main",
    "run_case",
    "run_cases",
]

CLEANUP_TIMEOUT = 5.0


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
            config = write_config(Path(config_dir), case, tmp / "config")
            settings = Settings.from_env(
                environment(case, upstream), **settings_overrides(config, tmp / "files")
            )
            gateway = web.AppRunner(
                create_app(settings), handle_signals=False, access_log=None, shutdown_timeout=1.0
            )
            await gateway.setup()
            await web.TCPSite(gateway, "127.0.0.1", 0).start()
            host, port = gateway.addresses[0][:2]
            fake.urls["gateway"] = f"http://{host}:{port}"
            session = aiohttp.ClientSession()
            await exchange(session, fake.urls, case, problems, fake.received)
    except TimeoutError:
        problems.append(f"the case did not finish within {case.timeout:g}s (hard timeout)")
    except SetupError as exc:
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
