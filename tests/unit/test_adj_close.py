"""Adj Close is checked like every price (issue 18, item 1).

It once was not: an Adj Close of 0 on one bar imported with exit 0, `data validate`
called it valid, and the backtest "succeeded" with a max drawdown of -95 % (-107.6 %
for a negative one); an empty one crashed the run with a traceback and exit 1.
Repro from the issue: 2010 of ORCL, Adj Close of data row 141 (2010-07-26) changed.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from kubetrader.data import DataStore, load_bars
from kubetrader.data.bundled import bundled_dir
from kubetrader.data.loader import clear_cache
from kubetrader.errors import DataError
from kubetrader.results.store import read_document
from tests.helpers import cli_in_process

BAD_BAR = "2010-07-26"


def _orcl_2010(tmp_path: Path, adj_close: str) -> Path:
    lines = (bundled_dir() / "orcl-1995-2014.txt").read_text().splitlines()
    rows = [lines[0]] + [line for line in lines[1:] if line.startswith("2010")]
    cells = rows[141].split(",")
    assert cells[0] == BAD_BAR
    cells[5] = adj_close
    rows[141] = ",".join(cells)
    path = tmp_path / f"tst-{adj_close or 'empty'}.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


_run = cli_in_process


BAD_VALUES = [
    ("0", "price is zero or negative (0.0)"),
    ("-1.5", "price is zero or negative (-1.5)"),
    ("", "price is missing or not a number (nan)"),
    ("inf", "price is infinite (inf)"),
]


@pytest.mark.parametrize(("value", "problem"), BAD_VALUES, ids=["zero", "negative", "empty", "inf"])
def test_import_refuses_a_bad_adj_close_naming_the_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, problem: str
) -> None:
    store = tmp_path / "store"
    file = str(_orcl_2010(tmp_path, value))
    code, out, err = _run(capsys, "data", "--data-dir", str(store), "import", file, "--symbol", "TST")
    assert code == 2, out + err
    assert f"TST 1d: corrupt data: bar {BAD_BAR} column adj_close: {problem}" in err
    assert "Traceback" not in err
    assert not DataStore(store).has("TST", "1d")


@pytest.mark.parametrize(("value", "problem"), BAD_VALUES, ids=["zero", "negative", "empty", "inf"])
def test_validate_and_load_refuse_a_stored_bad_adj_close(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, problem: str
) -> None:
    """Bars stored anyway (`--relaxed`, or by a version that did not check) are named at validate and at load."""
    store = DataStore(tmp_path / "store")
    store.import_file(_orcl_2010(tmp_path, value), "TST", strict=False)
    code, out, _ = _run(capsys, "data", "--data-dir", str(store.root), "validate", "TST")
    assert code == 2
    assert "INVALID" in out
    squeezed = "".join(c for c in out if c.isascii() and not c.isspace())  # the table wraps its cells
    assert f"bar {BAD_BAR} column adj_close: {problem}".replace(" ", "") in squeezed
    clear_cache()
    with pytest.raises(DataError, match=f"TST 1d: corrupt data: bar {BAD_BAR} column adj_close: "):
        load_bars("TST", start=None, end=None, store=store)
    # a range that does not hold the bad bar is still usable
    assert len(load_bars("TST", start=None, end=dt.date(2010, 6, 30), store=store)) == 124


def test_backtest_on_a_bad_adj_close_fails_with_exit_2_and_no_success(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DataStore(tmp_path / "store")
    store.import_file(_orcl_2010(tmp_path, ""), "TST", strict=False)
    monkeypatch.setenv("KUBETRADER_DATA_DIR", str(store.root))
    clear_cache()
    out_dir = tmp_path / "out"
    code, _, err = _run(
        capsys,
        "backtest",
        "--strategy",
        "strategies.sma_crossover.SMACrossover",
        "--symbols",
        "TST",
        "--start",
        "2010-01-01",
        "--end",
        "2010-12-31",
        "--param",
        "fast=5",
        "--param",
        "slow=20",
        "--output",
        str(out_dir),
    )
    assert code == 2
    assert "Traceback" not in err
    assert f"bar {BAD_BAR} column adj_close" in err
    (document_path,) = (out_dir / "backtests").glob("*.json")
    document = read_document(document_path)
    assert document.status == "failed" and not document.metrics and not document.equity
