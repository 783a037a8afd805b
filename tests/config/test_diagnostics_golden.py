"""Golden diagnostics: each tests/fixtures/broken/<case>/ is a small broken config directory.

`expected.txt` holds the exact lines `pixgate lint` should print (sorted as
`Diagnostics.sorted()` gives them). A case may hold `env.json` (the environment to build with;
default: empty) and `xfail.txt` (why the engine's output is known to be wrong today: the case
then runs as a strict xfail, so it fails loudly once the engine is fixed).

To add a case: create the directory, write `expected.txt` by reasoning about what the engine
should say (not by copying its output), then run this file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from engine.config.diagnostics import CODES, Diagnostic, Severity
from engine.config.loader import BuildResult, build_snapshot

CASES_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "broken"
CASES = sorted(p for p in CASES_DIR.iterdir() if p.is_dir())
LINE = re.compile(
    r"^(?P<file>\S+):(?P<line>\d+):(?P<col>\d+) (?P<code>[EW]\d{3}) (?P<path>\S+): .+$"
)


def _build(case: Path) -> BuildResult:
    env_file = case / "env.json"
    env = json.loads(env_file.read_text(encoding="utf-8")) if env_file.is_file() else {}
    return build_snapshot(case, env)


def _expected(case: Path) -> list[str]:
    return (case / "expected.txt").read_text(encoding="utf-8").splitlines()


def _params(*, strict_golden: bool) -> list[object]:
    out = []
    for case in CASES:
        marks = []
        reason = case / "xfail.txt"
        if strict_golden and reason.is_file():
            text = " ".join(reason.read_text(encoding="utf-8").split())
            marks.append(pytest.mark.xfail(reason=text, strict=True))
        out.append(pytest.param(case, id=case.name, marks=marks))
    return out


def _by_case(name: str) -> BuildResult:
    return _build(CASES_DIR / name)


def _find(result: BuildResult, code: str) -> list[Diagnostic]:
    return [d for d in result.diagnostics.sorted() if d.code == code]


@pytest.mark.parametrize("case", _params(strict_golden=True))
def test_golden_diagnostics(case: Path) -> None:
    result = _build(case)
    actual = [d.format() for d in result.diagnostics.sorted()]
    assert actual == _expected(case)


@pytest.mark.parametrize("case", _params(strict_golden=False))
def test_ok_iff_no_errors(case: Path) -> None:
    """Errors block the snapshot; warnings alone never do (and are kept on the snapshot)."""
    result = _build(case)
    wants_error = any(line.split(" ")[1].startswith("E") for line in _expected(case))
    assert result.ok is (not wants_error)
    assert result.ok is (not result.diagnostics.errors)
    if result.ok:
        assert result.snapshot is not None
        assert sorted(result.snapshot.warnings, key=Diagnostic.format) == sorted(
            result.diagnostics.warnings, key=Diagnostic.format
        )
    else:
        assert result.snapshot is None


@pytest.mark.parametrize("case", _params(strict_golden=False))
def test_expected_files_are_well_formed(case: Path) -> None:
    lines = _expected(case)
    assert lines, "expected.txt is empty"
    for line in lines:
        match = LINE.match(line)
        assert match, f"not a diagnostic line: {line!r}"
        assert match.group("code") in CODES
        assert (case / match.group("file")).is_file(), line
    keys = [
        (m["file"], int(m["line"]), int(m["col"]), m["code"])
        for m in (LINE.match(line) for line in lines)
        if m
    ]
    assert keys == sorted(keys), "expected.txt must be in Diagnostics.sorted() order"


def test_cases_cover_the_codes() -> None:
    used = {
        m.group("code") for case in CASES for line in _expected(case) if (m := LINE.match(line))
    }
    required = {
        "E001", "E002", "E101", "E102", "E103", "E104", "E201", "E202", "E203", "E211",
        "E221", "E231", "E241", "E301", "E302", "E303", "E304", "W401", "W402",
    }  # fmt: skip
    assert required <= used, f"no golden case for {sorted(required - used)}"


# Cases marked xfail above still have parts that work today; pin those down so a regression
# in them is not hidden behind the xfail.


def test_step_refs_codes_and_messages() -> None:
    result = _by_case("step_refs")
    assert {d.code for d in result.diagnostics.items} == {"E203"}
    assert all(".request" in d.path for d in result.diagnostics.items)
    found = sorted((d.path.partition(".request")[0], d.message) for d in result.diagnostics.items)
    assert found == [
        ("tasks.generate.steps[0]", "steps.poll: no earlier step named 'poll'"),
        ("tasks.generate.steps[1]", "steps.sbumit: no earlier step named 'sbumit'"),
        ("tasks.generate.steps[1]", "steps.submit.job_id: step 'submit' extracts no 'job_id'"),
    ]


def test_jmespath_error_positions() -> None:
    result = _by_case("jmespath_syntax")
    found = [(d.line, d.col, d.path) for d in _find(result, "E211")]
    assert found == [
        (15, 20, "tasks.generate.steps[0].extract.task_id"),
        (16, 17, "tasks.generate.steps[0].images"),
        (20, 11, "errors[1].when"),
    ]
    images = _find(result, "E211")[1]
    assert images.message.startswith("JMESPath: Expecting: star, got: dot: Parse error at column 5")


def test_unknown_key_in_model_is_a_schema_error() -> None:
    result = _by_case("unknown_key_in_model")
    assert [(d.file, d.code) for d in result.diagnostics.items] == [
        ("providers.d/broken.yaml", "E101")
    ]
    assert result.diagnostics.items[0].path.startswith("models.m1")


def test_bad_duration_text_is_a_schema_error_at_the_value() -> None:
    result = _by_case("bad_duration_text")
    found = [(d.file, d.line, d.col, d.code, d.path) for d in result.diagnostics.sorted()]
    assert found == [
        ("providers.d/broken.yaml", 13, 20, "E101", "tasks.generate.steps[0].request.timeout"),
        ("routes.yaml", 3, 14, "E101", "routes.r.timeout"),
    ]


def test_yaml_unclosed_quote_position() -> None:
    (diag,) = _by_case("yaml_unclosed_quote").diagnostics.items
    assert (diag.line, diag.col, diag.code) == (5, 1, "E001")
    assert diag.message.startswith("found unexpected end of stream")


def test_unset_env_builds_once_the_variables_are_set() -> None:
    case = CASES_DIR / "unset_env"
    env = json.loads((case / "env.json").read_text(encoding="utf-8"))
    env |= {"BROKEN_KEY_1": "k1", "ROUTE_NOTE": "note"}
    result = build_snapshot(case, env)
    assert result.ok, [d.format() for d in result.diagnostics.items]
    assert result.snapshot is not None
    broken = result.snapshot.providers["broken"]
    assert broken.base_url == "https://env.test"
    # "" with a default takes the default; `$$` escapes a dollar.
    assert broken.auth.keys == ("k1", "fallback", "${NOT_A_VAR}")
    assert broken.auth.value is not None
    assert broken.auth.value.render({"key": "K"}) == "Bearer K"
    assert result.snapshot.routes.routes["r"].description == "note"


def test_warnings_only_config_builds() -> None:
    result = _by_case("no_keys_warning")
    assert result.ok and result.snapshot is not None
    assert {d.severity for d in result.diagnostics.items} == {Severity.WARNING}
    assert not result.snapshot.providers["keyless"].available
    assert result.snapshot.providers["good"].available
