"""`kubetrader data import|list|validate` through the real entry point (kubetrader.cli.main.main)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetrader.data.bundled import bundled_dir
from tests.helpers import cli_in_process

_run = cli_in_process


def test_import_then_list_shows_the_data_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "store")
    code, out, _ = _run(
        capsys, "data", "--data-dir", store, "import", str(bundled_dir() / "goog-2004-2013.csv"), "--symbol", "GOOG"
    )
    assert code == 0
    assert "GOOG 1d: 2148 bars added, 0 replaced, 0 unchanged" in out
    code, out, _ = _run(capsys, "data", "--data-dir", store, "list")
    assert code == 0
    row = next(line for line in out.splitlines() if "GOOG" in line)
    for cell in ("GOOG", "1d", "2004-08-19", "2013-03-01", "2148", "goog-2004-2013.csv"):
        assert cell in row


def test_import_of_a_corrupt_file_exits_2_naming_the_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text(
        "Date,Time,Open,High,Low,Close,Volume,OpenInterest\n"
        "2006-01-02,09:05:00,3578.73,3587.88,3578.73,3582.99,0,0\n"
        "2006-01-02,09:10:00,3583.01,3580.00,3583.01,3588.03,0,0\n"
    )
    code, out, err = _run(capsys, "data", "--data-dir", str(tmp_path / "s"), "import", str(bad), "--symbol", "IDX")
    assert code == 2
    assert "bar 2006-01-02 09:10 column high: high is below low" in err
    code, out, _ = _run(capsys, "data", "--data-dir", str(tmp_path / "s"), "list")
    assert "no data in" in out


def test_validate_bundled_symbol_is_valid_and_shows_zero_volume_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "data", "--data-dir", str(tmp_path), "validate", "IDX2006")
    assert code == 0
    assert "IDX2006 1d: 255 bars, 2006-01-02 .. 2006-12-29: valid (0 errors, 1 warnings" in out
    assert "zero_volume" in out


def test_validate_exits_2_when_a_check_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # ORCL's longest hole is the 4-session close after 11 September 2001
    code, out, _ = _run(capsys, "data", "--data-dir", str(tmp_path), "validate", "ORCL", "--max-gap-sessions", "3")
    assert code == 2
    assert "INVALID" in out
    text = " ".join(out.replace("│", " ").split())  # the table may wrap the message over lines
    assert "bar 2001-09-17: 4 sessions" in text and "since 2001-09-10" in text


def test_validate_unknown_symbol_suggests_the_close_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "data", "--data-dir", str(tmp_path), "validate", "NVD")
    assert code == 2
    assert "unknown symbol 'NVD'" in err and "did you mean 'NVDA'" in err


def test_bad_symbol_and_bad_format_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = str(bundled_dir() / "goog-2004-2013.csv")
    code, _, err = _run(capsys, "data", "--data-dir", str(tmp_path), "import", source, "--symbol", "goog")
    assert code == 2
    assert "symbol: 'goog' is not a ticker" in err
    code, _, err = _run(capsys, "data", "--data-dir", str(tmp_path), "import", source, "--symbol", "G", "--format", "x")
    assert code == 2
    assert "--format" in err


def test_list_shows_every_bundled_symbol_before_first_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kubetrader.data.bundled import BUNDLED

    code, out, _ = _run(capsys, "data", "--data-dir", str(tmp_path / "empty"), "list")
    assert code == 0
    assert {symbol for symbol, _ in BUNDLED} <= set(out.split())
