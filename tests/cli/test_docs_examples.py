"""The complete provider files shown in docs/providers.md are what a reader copies first: each
must build as written (no lint error), with a route to its first model."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from .helpers import REPO, run, shipped, use_env

FENCE = re.compile(r"```yaml\n(.*?)```", re.S)
SCHEMA_LINE = "# yaml-language-server: $schema=../schemas/provider.schema.json"


def complete_examples() -> list[str]:
    text = (REPO / "docs" / "providers.md").read_text(encoding="utf-8")
    return [block for block in FENCE.findall(text) if block.startswith(SCHEMA_LINE)]


def test_the_page_has_complete_examples() -> None:
    assert len(complete_examples()) >= 2  # an image provider and a chat provider


def example_id(block: str) -> str:
    return str(yaml.safe_load(block)["id"])


@pytest.mark.parametrize("block", complete_examples(), ids=example_id)
def test_a_complete_example_builds(
    block: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_env(monkeypatch, {})
    doc = yaml.safe_load(block)
    shipped(tmp_path, "demo")  # a chat provider is never routed: the config routes the demo
    (tmp_path / "providers.d" / f"{doc['id']}.yaml").write_text(block, encoding="utf-8")
    routes = {"d": {"targets": [{"provider": "demo", "model": "demo-v1"}]}}
    if doc.get("kind") != "chat":
        routes["example"] = {
            "targets": [{"provider": doc["id"], "model": next(iter(doc["models"]))}]
        }
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump({"routes": routes}), encoding="utf-8")
    code, out, _ = run(capsys, "lint", str(tmp_path), "--format", "json")
    report = json.loads(out)
    errors = [d for d in report["diagnostics"] if d.get("severity") == "error"]
    assert code == 0 and report["ok"] and errors == [], errors


def test_the_routes_page_example_builds_with_the_shipped_providers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(monkeypatch, {})
    block = FENCE.findall((REPO / "docs" / "routes.md").read_text(encoding="utf-8"))[0]
    providers = {
        t["provider"] for r in yaml.safe_load(block)["routes"].values() for t in r["targets"]
    }
    shipped(tmp_path, *sorted(providers))
    (tmp_path / "routes.yaml").write_text(block, encoding="utf-8")
    code, out, _ = run(capsys, "lint", str(tmp_path), "--format", "json")
    report = json.loads(out)
    errors = [d for d in report["diagnostics"] if d.get("severity") == "error"]
    assert code == 0 and report["ok"] and errors == [], errors


def step_snippets() -> list[str]:
    """providers.md's step lists that stand alone (every `steps.<name>` they read is theirs)."""
    text = (REPO / "docs" / "providers.md").read_text(encoding="utf-8")
    out = []
    for block in FENCE.findall(text):
        if not textwrap.dedent(block).startswith("- name:"):
            continue
        defined = set(re.findall(r"name: ([a-z_]+)", block))
        if set(re.findall(r"steps\.([a-z_]+)\.", block)) <= defined:
            out.append(block)
    return out


def test_the_page_has_step_snippets() -> None:
    assert len(step_snippets()) >= 3  # `when`, streaming, `from_json`


@pytest.mark.parametrize("block", step_snippets(), ids=lambda b: b.split("name: ")[1].split()[0])
def test_a_step_snippet_builds_in_a_provider(
    block: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(monkeypatch, {})
    steps = yaml.safe_load(textwrap.dedent(block))
    provider = {
        "id": "snippet",
        "base_url": "https://upstream.test",
        "auth": {"required": False},
        "params": {"gpt_image": True},
        "models": {"m": {"tasks": ["generate", "edit"]}},
        "tasks": {"generate": {"steps": steps}, "edit": {"steps": steps}},
    }
    (tmp_path / "providers.d").mkdir()
    (tmp_path / "providers.d" / "snippet.yaml").write_text(yaml.safe_dump(provider))
    routes = {"demo": False, "routes": {"r": {"targets": [{"provider": "snippet", "model": "m"}]}}}
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes), encoding="utf-8")
    code, out, _ = run(capsys, "lint", str(tmp_path), "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["ok"], report["diagnostics"]
