"""Screened studies: the twin ranks the grid, Backtrader confirms, and a lying twin is caught."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kubetrader.optimize.screening import ScreeningMismatchError
from kubetrader.optimize.service import run_study
from kubetrader.specs import OptimizationStudySpec
from kubetrader.vectorized import twins
from kubetrader.vectorized.equivalence import harness_spec

SMA = "strategies.sma_crossover.SMACrossover"


def _study(tmp_path: Path, **extra: Any) -> OptimizationStudySpec:
    backtest = harness_spec(SMA, {}, start="2005-01-01")
    raw = {
        "backtest": backtest.to_wire(),
        "space": {
            "fast": {"type": "int", "low": 5, "high": 20, "step": 5},
            "slow": {"type": "int", "low": 30, "high": 60, "step": 10},
        },
        "constraints": ["fast < slow"],
        "objective": {"metric": "sharpe_ratio"},
        "screen": "vectorized",
        "confirmTop": 3,
        "trials": 16,
        **extra,
    }
    return OptimizationStudySpec.model_validate(raw)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir of its own (bundled data registers on first use) and an output dir."""
    monkeypatch.setenv("KUBETRADER_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def test_screened_study_reports_backtrader_runs_of_the_twins_top_points(isolated: Path) -> None:
    report = run_study(
        _study(isolated), name="screened", output_dir=isolated, storage_url=f"journal://{isolated}/j.log"
    )
    summary = json.loads((isolated / "studies" / "screened-screen.json").read_text())
    assert summary["points_screened"] == 16
    confirmed = summary["confirmed_on_backtrader"]
    assert [c["rank"] for c in confirmed] == [1, 2, 3]
    twin_ranked = [c["twin"] for c in confirmed]
    assert twin_ranked == sorted(twin_ranked, reverse=True)
    assert all(c["twin"] == pytest.approx(c["backtrader"], rel=1e-9) for c in confirmed)
    assert report.trials_complete == 3
    assert report.best_params == confirmed[0]["params"]
    assert report.best_value == confirmed[0]["backtrader"]
    assert report.confirmed_metrics["sharpe_ratio"] == pytest.approx(report.best_value, rel=1e-12)
    table = (isolated / "studies" / "screened-screen.csv").read_text().splitlines()
    assert table[0] == "fast,slow,twin_sharpe_ratio" and len(table) == 17


def _lying_signals(cache: Any, params: Any) -> Any:
    enter, leave, start = twins.sma_crossover(cache, params)
    return leave, enter, start  # entries and exits swapped: a twin with a bug


def test_screening_refuses_a_twin_that_disagrees_with_backtrader_on_the_study_data(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(twins.TWINS, SMA, twins.Twin(SMA, _lying_signals, verified=True))
    with pytest.raises(ScreeningMismatchError, match="disagrees with Backtrader"):
        run_study(_study(isolated), name="liar", output_dir=isolated, storage_url=f"journal://{isolated}/j.log")


def test_confirmation_fails_the_study_with_both_numbers_when_the_twin_scores_differ(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubetrader.optimize import screening

    monkeypatch.setitem(twins.TWINS, SMA, twins.Twin(SMA, _lying_signals, verified=True))
    original = screening.run_screened_study

    def without_self_check(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **kwargs, self_check_points=0)

    monkeypatch.setattr(screening, "run_screened_study", without_self_check)
    with pytest.raises(ScreeningMismatchError, match=r"twin .* vs Backtrader"):
        run_study(_study(isolated), name="liar2", output_dir=isolated, storage_url=f"journal://{isolated}/j.log")


def test_unverified_or_multi_symbol_specs_are_not_screenable_with_the_reason() -> None:
    from kubetrader.vectorized import not_screenable

    spec = harness_spec(SMA, {})
    assert not_screenable(spec) is None
    two = spec.model_copy(update={"data": spec.data.model_copy(update={"symbols": ["ORCL", "NVDA"]})})
    assert "one symbol" in (not_screenable(two) or "")
    other = spec.model_copy(update={"strategy": spec.strategy.model_copy(update={"path": "strategies.x.Y"})})
    assert "no vectorized twin" in (not_screenable(other) or "")


def test_points_the_strategy_refuses_score_nan_and_are_never_confirmed(bundled_store: Any) -> None:
    from kubetrader.data import load_bars
    from kubetrader.vectorized import Bars, equity_blocks

    spec = harness_spec(SMA, {}, start="2005-01-01")
    frame = load_bars("ORCL", timeframe="1d", start=spec.data.start, end=spec.data.end, store=bundled_store)
    points = [{"fast": 30, "slow": 10}, {"fast": 10, "slow": 30}]
    (block,) = list(equity_blocks(spec, points, bars=Bars.from_frame(frame)))
    assert block.valid.tolist() == [False, True]
    assert np.isnan(block.equity[0]).all() and np.isfinite(block.equity[1]).all()


def test_self_checked_points_count_as_confirmations_and_rank_one_writes_the_only_result(isolated: Path) -> None:
    import optuna

    from kubetrader.optimize import screening
    from kubetrader.optimize.study import ATTR_METRICS, open_storage

    storage = f"journal://{isolated}/j.log"
    # every scored point is self-checked: the confirmations reuse those Backtrader runs
    report = screening.run_screened_study(
        _study(isolated), name="reuse", output_dir=isolated, storage_url=storage, self_check_points=16, workers=2
    )
    study = optuna.load_study(study_name="reuse", storage=open_storage(storage))
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    assert all(t.value == t.user_attrs[ATTR_METRICS]["sharpe_ratio"] for t in trials)
    assert sorted(t.user_attrs[screening.ATTR_RANK] for t in trials) == [1, 2, 3]
    results = sorted(p.name for p in isolated.rglob("*.json") if p.parent.name != "studies" and "optuna" not in p.name)
    assert report.confirmed_result is not None and Path(report.confirmed_result).exists()
    assert results == [Path(report.confirmed_result).name]
    assert report.confirmed_metrics["sharpe_ratio"] == report.best_value
