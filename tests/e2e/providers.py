"""Config directories for end-to-end tests: shipped provider files, a test routes.yaml."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.gateway import REPO


def config_dir(tmp: Path, providers: list[str], routes: dict[str, object]) -> Path:
    """A config dir with the shipped files of `providers` and the given routes document."""
    root = tmp / "config"
    (root / "providers.d").mkdir(parents=True, exist_ok=True)
    for pid in providers:
        shutil.copy(REPO / "providers.d" / f"{pid}.yaml", root / "providers.d" / f"{pid}.yaml")
    (root / "routes.yaml").write_text(yaml.safe_dump({"demo": False, **routes}), encoding="utf-8")
    return root


def single(provider: str, model: str, name: str = "m", **route: object) -> dict[str, object]:
    return {"routes": {name: {"targets": [{"provider": provider, "model": model}], **route}}}
