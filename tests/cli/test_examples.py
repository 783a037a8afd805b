"""The CI examples: the pre-commit hook definition and the GitHub Actions workflow."""

from __future__ import annotations

import re

import yaml

from .helpers import REPO


def test_pre_commit_hook() -> None:
    [hook] = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert hook["id"] == "pixgate-lint"
    assert hook["entry"] == "pixgate lint" and hook["language"] == "python"
    assert hook["pass_filenames"] is False
    files = re.compile(hook["files"])
    for path in ("routes.yaml", "providers.d/openai.yaml", "providers.d/x.yml"):
        assert files.search(path), path
    for path in ("bench/routes.yaml", "providers.d/notes.md", "routes.yaml.bak", "x/routes.yaml"):
        assert not files.search(path), path


def test_github_actions_workflow() -> None:
    text = (REPO / "examples" / "github-actions" / "pixgate-config.yml").read_text("utf-8")
    workflow = yaml.safe_load(text)
    assert "pull_request" in workflow[True]  # YAML 1.1 reads the key `on` as true
    steps = workflow["jobs"]["check"]["steps"]
    runs = [s.get("run", "") for s in steps]
    assert any(s.get("with", {}).get("python-version") == "3.11" for s in steps)
    assert any(r.startswith("python -m pip install") and "pixgate" in r for r in runs)
    assert "pixgate lint . --format github" in runs
    assert "pixgate test ." in runs
