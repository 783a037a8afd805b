"""`pip install .` ships every engine package: pyproject lists them by hand (the bundled config
is mapped in beside them), so a new folder under engine/ must be added there too."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.gateway import TEST_ADMIN_KEY, free_port, get_json, wait_healthy
from tests.services import missing

from .helpers import REPO


def test_every_engine_package_is_listed_in_pyproject() -> None:
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "engine").rglob("__init__.py")
    }
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"


def test_the_installed_wheel_serves_its_embedded_config_without_temporary_copies(
    tmp_path: Path,
) -> None:
    """Build the wheel offline, install it into a folder, and start `pixgate serve` from it
    (no config given, none in the current directory): it serves the config the wheel carries
    where it lies, and leaves nothing in the temporary directory."""
    if importlib.util.find_spec("wheel") is None:
        missing("the `wheel` package (to build pixgate's wheel offline)", "pip install wheel")
    src = tmp_path / "src"
    for name in ("pyproject.toml", "README.md", "routes.yaml"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("engine", "schemas", "providers.d"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", "dist"]
    subprocess.run([*build, str(src)], cwd=tmp_path, check=True, timeout=120)
    (wheel,) = (tmp_path / "dist").glob("pixgate-*.whl")
    site = tmp_path / "site"
    install = [*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, timeout=120)

    scratch, run = tmp_path / "tmp", tmp_path / "run"
    scratch.mkdir()
    run.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXGATE_")}
    env.update(PYTHONPATH=str(site), TMPDIR=str(scratch), PIXGATE_STORAGE_DIR=str(tmp_path / "f"))
    env["PIXGATE_ADMIN_KEY"] = TEST_ADMIN_KEY  # /admin/health tells how many providers loaded
    where = subprocess.run(
        [sys.executable, "-c", "import engine.cli as c; print(c.bundled_config_dir())"],
        cwd=run, env=env, capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    assert where.stdout.strip() == str(site / "engine" / "bundled")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", "--port", str(port)],
        cwd=run, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        health = wait_healthy(port, admin=TEST_ADMIN_KEY)
        body = {"model": "demo", "prompt": "x", "size": "64x64", "response_format": "b64_json"}
        assert get_json(f"http://127.0.0.1:{port}/v1/images/generations", body)["data"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert health["providers"] >= 2
    assert "serving the embedded demo config" in err.decode()
    assert sorted(p.name for p in scratch.iterdir()) == []
