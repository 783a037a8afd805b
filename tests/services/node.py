"""Node.js and the npm packages of tests/clients/node, installed from the registry by the tests.

`node_clients()` finds `node` and `npm` (through `require`: CI fails without them) and runs
`npm ci` in tests/clients/node when its node_modules does not hold exactly what
package-lock.json pins: once per machine and lock file, not per test. `run_script()` runs a
script there with a timeout, without blocking the event loop of the gateway it talks to.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.gateway import REPO
from tests.services import missing, require

CLIENTS = REPO / "tests" / "clients" / "node"
HOW = "apt-get install -y nodejs npm (.ci/run does it)"
INSTALL_TIMEOUT = 600.0
STAMP = ".pixgate-lock-sha256"  # in node_modules: the lock file it was installed from


@dataclass(frozen=True)
class NodeClients:
    node: str
    directory: Path


def node_clients() -> NodeClients:
    node = require("node", HOW)
    npm = require("npm", HOW)
    lock = (CLIENTS / "package-lock.json").read_bytes()
    wanted = hashlib.sha256(lock).hexdigest()
    stamp = CLIENTS / "node_modules" / STAMP
    if not stamp.is_file() or stamp.read_text().strip() != wanted:
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=CLIENTS,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            missing("the npm packages of tests/clients/node", "npm ci (it timed out)")
            raise AssertionError("unreachable") from None
        if done.returncode != 0:
            missing(
                "the npm packages of tests/clients/node",
                f"npm ci in {CLIENTS} (it failed: {done.stderr.strip()[-500:]})",
            )
        stamp.write_text(wanted)
    return NodeClients(node, CLIENTS)


SCRIPT_TIMEOUT = 180.0


async def run_script(
    clients: NodeClients, script: str, env: dict[str, str]
) -> list[dict[str, Any]]:
    """Run `script` (in tests/clients/node) and return the JSON objects it printed, one a line.
    Async, since the gateway it talks to runs on the test's event loop. It must exit 0; its
    stderr is in the assertion message when it does not."""
    proc = await asyncio.create_subprocess_exec(
        clients.node,
        script,
        cwd=clients.directory,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), SCRIPT_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{script} did not finish within {SCRIPT_TIMEOUT:.0f}s") from None
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{err.decode()[-4000:]}"
    return [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
