"""Golden provider cases (tests/providers/<provider>/<case>.yaml) replayed by engine.testing.

One generic test per case file, plus checks that every shipped provider has cases, that the case
files and schema stay well-formed, and that the runner itself fails loudly on wrong cases.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.testing import (
    CaseFileError,
    discover_cases,
    format_result,
    load_case,
    run_case,
)
from engine.testing import main as golden_main

ROOT = Path(__file__).resolve().parents[1]
CASES_DIR = ROOT / "tests" / "providers"
SCHEMA = ROOT / "schemas" / "golden.schema.json"
SCHEMA_LINE = "# yaml-language-server: $schema=../../../schemas/golden.schema.json"


def _param(path: Path) -> Any:
    case_id = f"{path.parent.name}/{path.stem}"
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        doc = None  # load_case reports it properly in the test
    reason = doc.get("xfail") if isinstance(doc, dict) else None
    marks = [pytest.mark.xfail(reason=str(reason), strict=True)] if reason else []
    return pytest.param(path, id=case_id, marks=marks)


CASE_FILES = discover_cases(CASES_DIR)


@pytest.mark.parametrize("path", [_param(p) for p in CASE_FILES])
async def test_golden_case(path: Path) -> None:
    try:
        case = load_case(path)
    except CaseFileError as exc:
        pytest.fail(f"invalid case file:\n{exc}", pytrace=False)
    result = await run_case(ROOT, case)
    assert result.passed, "\n" + format_result(result)


def test_every_shipped_provider_has_golden_cases() -> None:
    shipped = {p.stem for p in (ROOT / "providers.d").glob("*.y*ml")}
    covered = {p.parent.name for p in CASE_FILES}
    assert shipped, "no provider files found"
    assert not shipped - covered, f"providers without golden cases: {sorted(shipped - covered)}"
    assert not covered - shipped, f"case folders naming no provider: {sorted(covered - shipped)}"


def test_case_files_name_their_schema() -> None:
    wrong = [
        str(p.relative_to(ROOT))
        for p in CASE_FILES
        if p.read_text(encoding="utf-8").splitlines()[:1] != [SCHEMA_LINE]
    ]
    assert not wrong, f"case files must start with '{SCHEMA_LINE}': {wrong}"


def test_schema_closes_and_describes_every_object() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    problems: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{where}[{i}]")
            return
        if not isinstance(node, dict):
            return
        if "properties" in node and node.get("additionalProperties") is not False:
            problems.append(f"{where}: object without additionalProperties: false")
        for name, prop in (node.get("properties") or {}).items():
            if isinstance(prop, dict) and "description" not in prop:
                problems.append(f"{where}.properties.{name}: no description")
        for key, value in node.items():
            if key != "properties":
                walk(value, f"{where}.{key}")
            else:
                for name, prop in value.items():
                    walk(prop, f"{where}.properties.{name}")

    walk(schema, "$")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------
# The runner must fail (readably) when a case is wrong: it can never silently pass.


def _write_variant(tmp_path: Path, source: str, name: str, change: Any) -> Path:
    doc = yaml.safe_load((CASES_DIR / source).read_text(encoding="utf-8"))
    doc = copy.deepcopy(doc)
    change(doc)
    target = tmp_path / source.split("/")[0] / f"{name}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return target


async def test_runner_fails_on_a_header_the_gateway_does_not_send(tmp_path: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["exchanges"][0]["expect"]["headers"]["x-golden-never-sent"] = "yes"

    case = load_case(_write_variant(tmp_path, "modelscope/poll-url.yaml", "wrong-header", change))
    result = await run_case(ROOT, case)
    report = format_result(result)
    assert not result.passed, report
    assert result.outcome == "FAIL"
    assert 'headers.x-golden-never-sent: expected "yes", but it is missing' in report
    assert "upstream request #1 does not match exchange #1 (POST /v1/images/generations" in report
    assert "got: POST /v1/images/generations" in report
    assert "response.status: expected 200, got 502" in report


async def test_runner_fails_on_wrong_body_and_unused_exchanges(tmp_path: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["exchanges"][0]["expect"]["json"]["prompt"] = "a different prompt"

    case = load_case(_write_variant(tmp_path, "modelscope/poll-url.yaml", "wrong-body", change))
    report = format_result(await run_case(ROOT, case))
    assert 'json.prompt: expected "a different prompt", got "A golden cat"' in report
    assert "2 of 3 expected exchanges never happened" in report


async def test_runner_fails_on_an_exchange_that_never_happens(tmp_path: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["exchanges"].append(copy.deepcopy(doc["exchanges"][0]))

    case = load_case(_write_variant(tmp_path, "openai/dall-e-3-b64.yaml", "extra", change))
    result = await run_case(ROOT, case)
    assert not result.passed
    assert "1 of 2 expected exchanges never happened" in format_result(result)


async def test_runner_fails_on_wrong_response_and_image(tmp_path: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["response"]["headers"] = {"x-pixgate-provider": "someone-else"}
        doc["response"]["json"]["data"][0]["revised_prompt"] = "another prompt"
        doc["response"]["images"] = [{"width": 512, "height": 1024, "format": "jpeg"}]

    case = load_case(_write_variant(tmp_path, "openai/dall-e-3-b64.yaml", "wrong-out", change))
    report = format_result(await run_case(ROOT, case))
    assert 'response.headers.x-pixgate-provider: expected "someone-else", got "openai"' in report
    assert "response.json.data[0].revised_prompt: expected" in report
    assert "response.data[0]: expected width 512, got 1024" in report
    assert "response.data[0]: expected format jpeg, got png" in report


async def test_runner_reports_an_unexpected_pass_of_an_xfail_case(tmp_path: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["xfail"] = "pretend this is broken"

    case = load_case(_write_variant(tmp_path, "openai/dall-e-3-b64.yaml", "xpass", change))
    result = await run_case(ROOT, case)
    assert result.passed and not result.ok and result.outcome == "XPASS"


def test_invalid_case_file_is_reported_with_its_position(tmp_path: Path) -> None:
    bad = tmp_path / "openai" / "bad.yaml"
    bad.parent.mkdir()
    bad.write_text(
        f"{SCHEMA_LINE}\n"
        "description: typo\n"
        "request: {json: {prompt: x}}\n"
        "exchanges:\n"
        "  - expect: {method: POST, path: /v1/images/generations}\n"
        "    respond: {json: {}, text: both}\n"
        "respnse: {status: 200}\n",
        encoding="utf-8",
    )
    with pytest.raises(CaseFileError) as info:
        load_case(bad)
    text = str(info.value)
    assert f"{bad}:7:" in text and "respnse: unknown key 'respnse'; allowed: " in text
    assert "exchanges[0].respond: give at most one body kind" in text
    assert "'response' is a required property" in text


def test_main_prints_failures_and_a_summary(tmp_path: Path) -> None:
    """The pytest-free entry point behind `pixgate test DIR [PROVIDER...]`."""
    _write_variant(tmp_path, "openai/dall-e-3-b64.yaml", "good", lambda doc: None)

    def change(doc: dict[str, Any]) -> None:
        doc["response"]["status"] = 201

    _write_variant(tmp_path, "openai/dall-e-3-b64.yaml", "bad", change)
    out = io.StringIO()
    status = golden_main(ROOT, ["openai"], cases_dir=tmp_path, out=out)
    text = out.getvalue()
    assert status == 1, text
    assert "FAIL openai/bad" in text and "response.status: expected 201, got 200" in text
    assert "openai/good" not in text
    assert text.rstrip().endswith("1 passed, 1 failed")
    assert golden_main(ROOT, ["nobody"], cases_dir=tmp_path, out=io.StringIO()) == 2
