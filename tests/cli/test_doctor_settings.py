"""`pixgate doctor` with a PIXGATE_* value out of range says so in one line, like `serve`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import REPO, run, use_env


def test_doctor_reports_a_bad_setting_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    use_env(monkeypatch, {"PIXGATE_MAX_BUFFERED_BYTES": "-5", "PIXGATE_STORAGE_DIR": str(tmp_path)})
    code, out, err = run(capsys, "doctor", str(REPO))
    assert "config: ok" in out
    assert code == 2
    assert err.startswith("pixgate: ") and "PIXGATE_MAX_BUFFERED_BYTES" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
