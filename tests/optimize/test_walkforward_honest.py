"""Walk-forward with no look-ahead: every in-sample trial sees only its window's bars (a probe
strategy records them), re-runs never reuse trials of another window definition, intraday
windows are cut at bars, and the out-of-sample trades add up to the stitched equity."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kubetrader.optimize.validation import WalkForwardReport, run_walk_forward
from kubetrader.specs import OptimizationStudySpec
from tests.optimize.probes import PREFIX, RecordsBars, seen

DAILY: dict[str, Any] = {
    "backtest": {
        "strategy": {"path": f"{PREFIX}RecordsBars", "params": {"tag": "daily"}},
        "data": {"symbols": ["ORCL"], "start": "2008-01-01", "end": "2010-12-31"},
        "broker": {"cash": 100_000, "commission": {"model": "ib-standard"}, "slippage": {"marketBps": 5}},
    },
    "space": {
        "fast": {"type": "int", "low": 5, "high": 20, "step": 5},
        "slow": {"type": "int", "low": 30, "high": 60, "step": 30},
    },
    "trials": 3,
    "sampler": {"type": "random", "seed": 3},
    "validation": {"walkForward": {"inSample": 378, "outOfSample": 126}},
}
END = "2009-12-31"  # the re-run test's two years (DAILY's three for the trades test's four windows)


@pytest.fixture(autouse=True)
def probes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETRADER_STRATEGY_PREFIXES", f"strategies.,{PREFIX}")
    RecordsBars.SEEN.clear()


def spec_with(tag: str, end: str | None = None, **walk_forward: Any) -> OptimizationStudySpec:
    raw = copy.deepcopy(DAILY)
    raw["backtest"]["strategy"]["params"]["tag"] = tag
    if end:
        raw["backtest"]["data"]["end"] = end
    raw["validation"]["walkForward"].update(walk_forward)
    return OptimizationStudySpec.model_validate(raw)


def trial_runs(tag: str, report: WalkForwardReport) -> dict[int, list[list[pd.Timestamp]]]:
    """The recorded runs that were in-sample trials, by window (a run that starts and ends
    exactly on a window's in-sample bars)."""
    by_window: dict[int, list[list[pd.Timestamp]]] = {w.index: [] for w in report.windows}
    for run in seen(tag):
        for w in report.windows:
            first, last = pd.Timestamp(w.in_sample[0], tz="UTC"), pd.Timestamp(w.in_sample[1], tz="UTC")
            if run and run[0] == first and run[-1] == last:
                by_window[w.index].append(run)
    return by_window


def test_a_rerun_with_other_windows_runs_fresh_trials_inside_each_new_window(tmp_path: Path) -> None:
    # Two years: one 378-bar window, then two 252-bar ones (window 0 is where the old runs' trials were reused).
    first = run_walk_forward(spec_with("long", END), name="wf", output_dir=tmp_path, data_dir=tmp_path / "data")
    assert len(first.windows) == 1 and all(len(runs) == 3 for runs in trial_runs("long", first).values())
    second = run_walk_forward(
        spec_with("short", END, inSample=252), name="wf", output_dir=tmp_path, data_dir=tmp_path / "data"
    )
    assert len(second.windows) == 2
    runs = trial_runs("short", second)
    # Every window of the second definition ran its own trials, none inherited from the 378-bar windows.
    assert {w.index: len(r) for w, r in zip(second.windows, runs.values(), strict=True)} == {
        w.index: 3 for w in second.windows
    }
    for window in second.windows:
        assert window.trials_complete == 3
        for run in runs[window.index]:
            assert run[-1] < pd.Timestamp(window.out_of_sample[0], tz="UTC")  # nothing out of sample
    # The same definition again resumes its own window studies: no new trials, the same answer.
    RecordsBars.SEEN.clear()
    third = run_walk_forward(
        spec_with("short", END, inSample=252), name="wf", output_dir=tmp_path, data_dir=tmp_path / "data"
    )
    assert all(not r for r in trial_runs("short", third).values())
    assert third.out_of_sample_metrics["sharpe_ratio"] == second.out_of_sample_metrics["sharpe_ratio"]


def test_out_of_sample_trades_add_up_to_the_stitched_equity_after_switch_costs(tmp_path: Path) -> None:
    report = run_walk_forward(
        spec_with("trades", inSample=252, outOfSample=126), name="wft", output_dir=tmp_path, data_dir=tmp_path / "data"
    )
    out = tmp_path / "walkforward"
    equity = pd.read_csv(out / report.artifacts["oos_equity"], index_col=0, parse_dates=True)["equity"]
    trades = pd.read_csv(out / report.artifacts["oos_trades"])
    assert len(trades) > 5
    assert trades["pnl_net"].sum() == pytest.approx(equity.iloc[-1] - 100_000, abs=0.01)
    for window in report.windows:
        mine = trades[trades["window"] == window.index]
        boundary = pd.Timestamp(window.boundary, tz="UTC")
        assert (pd.to_datetime(mine["entry_time"], utc=True) >= boundary).all()  # nothing entered before it
        assert (window.switch_cost > 0) == (window.switch_shares != 0)
    carried = [w for w in report.windows if w.switch_shares]
    assert carried, "the test needs a boundary where the position changes"
    page = (out / report.artifacts["robustness"]).read_text()
    assert page.count("<img") == 4 and len(page) < 1_000_000  # IS vs OOS, stability, scatter, equity + benchmark
    assert all(w.deflated_sharpe is not None for w in report.windows)


def test_intraday_windows_are_cut_at_bars_and_the_out_of_sample_curve_keeps_them(tmp_path: Path) -> None:
    raw = copy.deepcopy(DAILY)
    raw["backtest"]["strategy"]["params"]["tag"] = "intraday"
    # 15 sessions of 5-minute bars (about 1,500): eight windows of 250 + 150 bars, each cut at a session
    raw["backtest"]["data"] = {"symbols": ["IDX2006"], "timeframe": "5m", "start": "2006-01-01", "end": "2006-01-20"}
    raw["space"] = {
        "fast": {"type": "int", "low": 5, "high": 10, "step": 5},
        "slow": {"type": "int", "low": 20, "high": 40, "step": 20},
    }
    raw["trials"] = 2
    raw["objective"] = {"metric": "total_return"}  # a daily Sharpe of a two-session window is undefined
    raw["validation"]["walkForward"] = {"inSample": 250, "outOfSample": 150}
    spec = OptimizationStudySpec.model_validate(raw)
    report = run_walk_forward(spec, name="wfi", output_dir=tmp_path, data_dir=tmp_path / "data")
    runs = trial_runs("intraday", report)
    assert len(report.windows) >= 5
    for window in report.windows:
        assert len(runs[window.index]) == 2
        first_oos = pd.Timestamp(window.out_of_sample[0], tz="UTC")
        for run in runs[window.index]:
            assert len(run) == window.in_sample_bars
            assert run[-1] < first_oos
    equity = pd.read_csv(tmp_path / "walkforward" / report.artifacts["oos_equity"], index_col=0, parse_dates=True)
    assert len(equity) == sum(w.out_of_sample_bars for w in report.windows)  # one row per bar, not per day
    assert equity.index.is_unique and equity.index.is_monotonic_increasing
    assert equity.index[0] == pd.Timestamp(report.windows[0].out_of_sample[0], tz="UTC")
