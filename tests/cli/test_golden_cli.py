"""`pixgate test DIR [PROVIDER...] --cases FOLDER`: golden cases replayed from the command line;
a failing case exits 1 and says what differs."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import REPO, run, use_env

CASE = """\
# yaml-language-server: $schema=../../../schemas/golden.schema.json
description: {description}
env: {{SILICONFLOW_API_KEYS: sk-golden-cli-0001}}
base_path: /v1
request:
  json: {{model: Kwai-Kolors/Kolors, prompt: a cat, size: 1024x1024}}
exchanges:
  - expect:
      method: POST
      path: /v1/images/generations
      headers: {{authorization: Bearer sk-golden-cli-0001}}
      json: {{model: Kwai-Kolors/Kolors, prompt: a cat, image_size: {image_size}}}
    respond:
      json: {{images: [{{url: "{{{{upstream}}}}/img/1.png"}}]}}
files:
  /img/1.png: {{image: {{width: 1024, height: 1024}}}}
response:
  status: 200
  headers: {{x-pixgate-provider: siliconflow}}
  json: {{data: [{{url: "{{{{upstream}}}}/img/1.png"}}]}}
"""


def write_case(cases: Path, name: str, description: str, image_size: str) -> Path:
    folder = cases / "siliconflow"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(CASE.format(description=description, image_size=image_size), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    use_env(monkeypatch, {})


def test_passing_case_exits_0(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cases = tmp_path / "cases"
    write_case(cases, "kolors-ok", "Kolors sends image_size and passes the URL on", "1024x1024")
    code, out, _ = run(capsys, "test", str(REPO), "siliconflow", "--cases", str(cases), "-v")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("PASS siliconflow/kolors-ok (")
    assert lines[-1] == "1 passed, 0 failed"


def test_failing_case_exits_1_with_a_readable_diff(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cases = tmp_path / "cases"
    write_case(cases, "kolors-ok", "Kolors sends image_size", "1024x1024")
    path = write_case(cases, "kolors-wrong", "expects the wrong image_size", "768x1024")
    code, out, _ = run(capsys, "test", str(REPO), "siliconflow", "--cases", str(cases))
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("FAIL siliconflow/kolors-wrong (")
    assert lines[0].endswith("): expects the wrong image_size")
    assert lines[1] == f"  file: {path}"
    assert lines[2] == (
        "  * upstream request #1 does not match exchange #1 (POST /v1/images/generations, line 8):"
    )
    assert lines[3] == '      - json.image_size: expected "768x1024", got "1024x1024"'
    assert "PASS" not in out  # passing cases are listed only with -v
    assert lines[-1] == "1 passed, 1 failed"


def test_no_cases_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "test", str(REPO), "--cases", str(tmp_path))
    assert code == 2
    assert out == f"no golden cases under {tmp_path}\n"
