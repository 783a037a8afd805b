"""`pixgate lint --format github`: one GitHub Actions workflow command per diagnostic, with the
file relative to the working directory, so a pull request shows each problem inline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config.diagnostics import Diagnostic
from engine.tools.lintformat import (
    annotation_path,
    escape_data,
    escape_property,
    github_command,
)

from .helpers import run, use_env

NOKEYS = """\
id: nokeys
base_url: https://api.example/v1
auth: {header: Authorization, value: "Bearer {{ key }}", keys: "${NOKEYS_API_KEYS:-}"}
models:
  m1: {sizes: [1024x1024]}
tasks:
  generate:
    steps:
      - name: generate
        request: {path: /images, json: {prompt: "{{ prompt }}"}}
        images: "data[].url"
"""
TPL = """\
id: tpl
base_url: https://api.example/v1
auth: {required: false}
models:
  m1: {sizes: [1024x1024]}
tasks:
  generate:
    steps:
      - name: generate
        request: {path: /images, json: {prompt: "{{ prompt }", size: "100%"}}
        images: "data[].url"
"""
ROUTES = """\
routes:
  r:
    targets:
      - {provider: nokeys, model: m1}
      - {provider: nokeys, model: m2}
defaults:
  generate: nowhere
aliases:
  pct: "50%, then: more"
"""


@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path/config: two warnings and four errors; the working directory is tmp_path."""
    root = tmp_path / "config"
    (root / "providers.d").mkdir(parents=True)
    (root / "providers.d" / "nokeys.yaml").write_text(NOKEYS, encoding="utf-8")
    (root / "providers.d" / "tpl.yaml").write_text(TPL, encoding="utf-8")
    (root / "routes.yaml").write_text(ROUTES, encoding="utf-8")
    use_env(monkeypatch, {})
    monkeypatch.chdir(tmp_path)
    return root


def test_github_format_exact_lines(capsys: pytest.CaptureFixture[str], broken: Path) -> None:
    code, out, err = run(capsys, "lint", "config", "--format", "github")
    assert code == 1
    assert out.splitlines() == [
        "::warning file=config/providers.d/nokeys.yaml,line=3,col=64,title=W401::auth.keys: "
        "no keys configured (set NOKEYS_API_KEYS); provider is unavailable",
        "::error file=config/providers.d/tpl.yaml,line=10,col=49,title=E201::"
        "tasks.generate.steps[0].request.json.prompt: template syntax: unexpected '}'",
        "::warning file=config/routes.yaml,line=4,col=20,title=W402::"
        "routes.r.targets[0].provider: provider 'nokeys' has no keys; this target is skipped",
        "::error file=config/routes.yaml,line=5,col=35,title=E302::routes.r.targets[1].model: "
        "provider 'nokeys' declares no model 'm2' (declared: m1)",
        "::error file=config/routes.yaml,line=7,col=13,title=E304::defaults.generate: "
        "default names unknown route 'nowhere'",
        # `%` in the message is escaped; `:` and `,` only need escaping in properties.
        "::error file=config/routes.yaml,line=9,col=8,title=E304::aliases.pct: "
        "alias points at unknown route '50%25, then: more'",
    ]
    assert err == "failed: 4 errors, 2 warnings\n"


def test_github_format_from_inside_the_config_dir(
    capsys: pytest.CaptureFixture[str], broken: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(broken)
    code, out, _ = run(capsys, "lint", ".", "--format", "github")
    assert code == 1
    assert out.splitlines()[0].startswith("::warning file=providers.d/nokeys.yaml,line=3,")


def test_text_and_json_formats_are_unchanged(
    capsys: pytest.CaptureFixture[str], broken: Path
) -> None:
    code, out, _ = run(capsys, "lint", "config")
    assert code == 1
    assert out.splitlines()[1] == (
        "providers.d/tpl.yaml:10:49 E201 tasks.generate.steps[0].request.json.prompt: "
        "template syntax: unexpected '}'"
    )
    code, out, _ = run(capsys, "lint", "config", "--format", "json")
    assert code == 1
    doc = json.loads(out)
    assert doc["ok"] is False
    assert doc["diagnostics"][0] == {
        "file": "providers.d/nokeys.yaml",
        "line": 3,
        "col": 64,
        "code": "W401",
        "severity": "warning",
        "path": "auth.keys",
        "message": "no keys configured (set NOKEYS_API_KEYS); provider is unavailable",
    }


def test_warnings_only_exit_0(capsys: pytest.CaptureFixture[str], broken: Path) -> None:
    (broken / "providers.d" / "tpl.yaml").unlink()
    (broken / "routes.yaml").write_text(
        "routes:\n  r: {targets: [{provider: nokeys, model: m1}]}\n"
    )
    code, out, err = run(capsys, "lint", "config", "--format", "github")
    assert code == 0
    assert [line.split(" ", 1)[0] for line in out.splitlines()] == ["::warning", "::warning"]
    assert err.startswith("ok: 1 providers, 1 routes, 2 warnings")


def test_escaping_follows_githubs_rules() -> None:
    assert escape_data("100% done\r\nnext: a, b") == "100%25 done%0D%0Anext: a, b"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    diag = Diagnostic("providers.d/x.yaml", 2, 5, "E202", "", "line one\nline two: 5%")
    assert github_command(diag, "we,ird:name.yaml") == (
        "::error file=we%2Cird%3Aname.yaml,line=2,col=5,title=E202::.: line one%0Aline two: 5%25"
    )


def test_annotation_paths(tmp_path: Path) -> None:
    cwd = str(tmp_path)
    assert annotation_path("config", "routes.yaml", cwd) == "config/routes.yaml"
    assert annotation_path(".", "providers.d/a.yaml", cwd) == "providers.d/a.yaml"
    assert annotation_path(tmp_path / "cfg", "routes.yaml", cwd) == "cfg/routes.yaml"
    outside = tmp_path.parent / "elsewhere"
    assert annotation_path(outside, "routes.yaml", cwd) == (outside / "routes.yaml").as_posix()
