"""Bad input: a clear message naming the field or symbol, exit 2, and no result that looks successful."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubetrader.cli.main import main
from kubetrader.pipeline import execute
from kubetrader.results.store import read_document

EXAMPLE = (Path(__file__).resolve().parents[2] / "examples" / "backtest-sma.yaml").read_text()


def _assert_failed_without_success(outcome: Any) -> None:
    assert outcome.status == "failed"
    assert outcome.exit_code == 2
    document = read_document(outcome.paths.json)
    assert document.status == "failed"
    assert document.error == outcome.error
    assert not document.equity and not document.metrics
    assert not outcome.paths.equity_csv.exists()
    assert not outcome.paths.tearsheet.exists()


def test_unknown_symbol_fails_naming_the_symbol(bundled_store: Any, make_spec: Any, tmp_path: Path) -> None:
    outcome = execute(make_spec(symbols=("NOPE",)), name="bad", output_dir=tmp_path, store=bundled_store)
    assert "NOPE" in (outcome.error or "")
    _assert_failed_without_success(outcome)


def test_date_range_without_data_fails(bundled_store: Any, make_spec: Any, tmp_path: Path) -> None:
    spec = make_spec(start="1980-01-01", end="1981-12-31")
    outcome = execute(spec, name="bad", output_dir=tmp_path, store=bundled_store)
    assert "ORCL" in (outcome.error or "")
    _assert_failed_without_success(outcome)


def test_strategy_raising_mid_run_names_exception_and_bar(
    bundled_store: Any, make_spec: Any, probe_strategies: str, tmp_path: Path
) -> None:
    spec = make_spec(f"{probe_strategies}RaisesMidRun", params={"fail_at": 50}, start="2005-01-01", end="2005-12-31")
    outcome = execute(spec, name="raises", output_dir=tmp_path, store=bundled_store)
    assert "RaisesMidRun raised RuntimeError: probe failure at bar 2005-03-15" in (outcome.error or "")
    _assert_failed_without_success(outcome)


def test_failed_rerun_removes_the_earlier_successful_artifacts(
    bundled_store: Any, make_spec: Any, probe_strategies: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = f"{probe_strategies}RaisesMidRun"
    spec = make_spec(path, params={"fail_at": 10_000}, start="2005-01-01", end="2005-12-31")
    first = execute(spec, name="rerun", output_dir=tmp_path, store=bundled_store, report=False)
    assert first.status == "succeeded" and first.paths is not None
    assert first.paths.equity_csv.exists()
    # The same spec (same id) fails the second time: the probe module is no longer allowed.
    monkeypatch.setenv("KUBETRADER_STRATEGY_PREFIXES", "strategies.")
    second = execute(spec, name="rerun", output_dir=tmp_path, store=bundled_store)
    assert second.id == first.id
    assert "outside the allowed strategy modules" in (second.error or "")
    _assert_failed_without_success(second)


def _run_cli(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, dict[str, Any]]:
    file = tmp_path / "bt.yaml"
    file.write_text(text)
    summary = tmp_path / "summary.json"
    with pytest.raises(SystemExit) as info:
        main(["run", "-f", str(file), "--output", str(tmp_path / "out"), "--summary-file", str(summary)])
    err = capsys.readouterr().err
    return int(info.value.code or 0), err, json.loads(summary.read_text())


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('end: "2014-12-31"', 'end: "2004-12-31"', "spec.data: end (2004-12-31) must be after start"),
        ("cash: 100000", "cash: -5", "spec.broker.cash: Input should be greater than 0"),
        ("model: ib-standard", "model: ib-premium", "spec.broker.commission.model: Input should be"),
        ("fast: 10", "fats: 10", "spec.strategy.params.fats: unknown parameter of SMACrossover (did you mean 'fast'?)"),
        ("fast: 10", "fast: ten", "spec.strategy.params.fast: expected int"),
        ("  symbols: [ORCL]", "  symbols: [ORCL", "malformed YAML"),
        ("marketBps: 5", "marketBsp: 5", "spec.broker.slippage.marketBsp: Extra inputs are not permitted"),
        ("cash: 100000", "cash: .inf", "spec.broker.cash: must be a finite number, not inf"),
        ("marketBps: 5", "marketBps: .nan", "spec.broker.slippage.marketBps: must be a finite number, not nan"),
        ("fast: 10", "fast: [5, 10]", "spec.strategy.params.fast: must be a boolean, number or string, not list"),
    ],
    ids=[
        "end-before-start",
        "negative-cash",
        "unknown-commission",
        "unknown-param",
        "param-type",
        "yaml",
        "typo",
        "infinite-cash",
        "nan-slippage",
        "list-param",
    ],
)
def test_cli_bad_spec_exits_2_naming_the_field(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    bundled_store: Any,
    old: str,
    new: str,
    expected: str,
) -> None:
    monkeypatch.setenv("KUBETRADER_DATA_DIR", str(bundled_store.root))
    assert old in EXAMPLE
    code, err, summary = _run_cli(tmp_path, EXAMPLE.replace(old, new), capsys)
    assert code == 2
    assert expected in err
    assert summary["status"] == "failed" and expected in summary["error"]
    backtests = tmp_path / "out" / "backtests"
    written = list(backtests.glob("*.json")) if backtests.exists() else []
    assert all(read_document(p).status == "failed" for p in written)


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--cash", "inf", "--cash: must be a finite number, not inf"),
        ("--slippage-bps", "nan", "--slippage-bps: must be a finite number, not nan"),
        ("--param", "fast=[5, 10]", "--param: must be a boolean, number or string, not list"),
    ],
)
def test_backtest_options_refuse_non_finite_numbers_and_lists_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, expected: str
) -> None:
    argv = ["backtest", "--strategy", "strategies.sma_crossover.SMACrossover", "--symbols", "ORCL"]
    argv += ["--start", "2010-01-01", "--end", "2010-12-31", option, value, "--output", str(tmp_path)]
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.strip() == f"error: {expected}"
    assert not (tmp_path / "backtests").exists()
