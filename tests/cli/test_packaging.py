"""`pip install .` ships every engine package: pyproject lists them by hand (the bundled config
is mapped in beside them), so a new folder under engine/ must be added there too."""

from __future__ import annotations

import tomllib

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
