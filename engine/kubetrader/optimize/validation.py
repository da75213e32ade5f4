"""Walk-forward validation: optimise on each in-sample window, trade the winner on the
next unseen window, stitch the out-of-sample stretches into one track record.

The out-of-sample run of a window starts at the window's in-sample start (indicators
are warm when the unseen stretch begins: a 200-day average would otherwise sit idle for
most of it). A position that run holds at the boundary is marked to market there, for
equity and trades alike, and switching the stitched record to it is charged its cost
(kubetrader.optimize.stitching). Nothing from the out-of-sample bars feeds the choice
of parameters: windows hold whole sessions (kubetrader.optimize.walkforward), and each
window's study is keyed by its definition (dates, space, constraints, objective, bars),
so a re-run with other windows never resumes trials that saw other bars.

The stitched out-of-sample equity file keeps the bars (intraday too); its metrics, like
every result's, are computed on the daily curve.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from kubetrader.errors import SpecError
from kubetrader.optimize.evaluation import Evaluator, InProcessEvaluator
from kubetrader.optimize.naming import study_key, window_study_key
from kubetrader.optimize.report import write_walk_forward_page
from kubetrader.optimize.service import deflated_sharpe_of_study
from kubetrader.optimize.service import pbo_of_driver as _pbo
from kubetrader.optimize.stitching import Costs, Stitcher
from kubetrader.optimize.study import StudyDriver, default_storage_url, open_storage, trial_spec
from kubetrader.optimize.walkforward import session_starts, snap_to_sessions, walk_forward_windows
from kubetrader.specs.study import OptimizationStudySpec

log = logging.getLogger(__name__)


class WindowReport(BaseModel):
    index: int
    in_sample: tuple[str, str] = Field(description="First and last in-sample bar (dates for daily data).")
    out_of_sample: tuple[str, str] = Field(description="First and last out-of-sample bar.")
    in_sample_bars: int
    out_of_sample_bars: int
    boundary: str = Field(description="The bar at whose close the window's position is taken over (last IS bar).")
    study_name: str
    best_params: dict[str, Any]
    in_sample_value: float | None
    out_of_sample_value: float | None
    trials_complete: int
    switch_shares: float = Field(description="Shares traded at the boundary to take over the window's position.")
    switch_cost: float = Field(description="What that switch cost (commission + slippage), charged to the equity.")
    deflated_sharpe: float | None = Field(default=None, description="DSR of the in-sample winner among its trials.")
    pbo: float | None = Field(default=None, description="PBO of the window's in-sample selection (CSCV).")


class WalkForwardReport(BaseModel):
    name: str
    metric: str
    anchored: bool
    windows: list[WindowReport]
    out_of_sample_metrics: dict[str, float | None] = Field(description="Metrics of the stitched OOS curve.")
    in_sample_metrics: dict[str, float | None] = Field(description="Mean over windows of the in-sample metrics.")
    efficiency: float | None = Field(description="OOS CAGR / mean in-sample CAGR (walk-forward efficiency).")
    carried_positions: str = Field(
        default="marked to market at the boundary (kubetrader.optimize.stitching)",
        description="How a position held when a window starts enters the out-of-sample record.",
    )
    artifacts: dict[str, str] = Field(default_factory=dict)
    mlflow_run_id: str | None = None


def run_walk_forward(
    spec: OptimizationStudySpec,
    *,
    name: str,
    output_dir: Path,
    data_dir: Path,
    evaluator: Evaluator | None = None,
    namespace: str | None = None,
    uid: str | None = None,
) -> WalkForwardReport:
    """Walk forward `spec` (see the module docstring). `name`, `namespace` and `uid` key the
    windows' studies as `kubetrader.optimize.naming` keys any study."""
    import pandas as pd

    from kubetrader.costs import commission_schedule
    from kubetrader.data import load_bars
    from kubetrader.metrics import compute_metrics
    from kubetrader.runner import BacktestRunner

    if spec.validation is None or spec.validation.walk_forward is None:
        raise SpecError("validation.walkForward", "required for a walk-forward run")
    wf = spec.validation.walk_forward
    data = spec.backtest.data
    symbols = list(dict.fromkeys([*data.symbols, spec.backtest.benchmark_symbol]))
    bars = {s: load_bars(s, timeframe=data.timeframe, start=data.start, end=data.end) for s in symbols}
    times = bars[data.symbols[0]].index
    days = [t.date() for t in times]
    windows = snap_to_sessions(
        walk_forward_windows(len(times), wf.in_sample, wf.out_of_sample, anchored=wf.anchored),
        session_starts(days),
        len(times),
    )
    intraday = len(set(days)) != len(days)
    evaluator = evaluator or InProcessEvaluator()
    metric = spec.objective.metric
    closes = {s: frame["close"] for s, frame in bars.items()}
    stitcher = Stitcher(
        cash=spec.backtest.broker.cash,
        costs=Costs(commission_schedule(spec.backtest.broker), spec.backtest.broker.slippage.market_bps),
    )
    window_reports: list[WindowReport] = []
    oos_benchmark: list[pd.Series] = []
    in_sample_metrics: list[dict[str, float | None]] = []
    key = study_key(name, study_name=spec.study_name, namespace=namespace, uid=uid)
    for window in windows:
        is_first, is_last = times[window.in_start], times[window.in_end - 1]
        oos_first, oos_last = times[window.out_start], times[window.out_end - 1]
        is_backtest = _with_range(spec.backtest, is_first.date(), is_last.date())
        window_spec = spec.model_copy(
            update={
                "backtest": is_backtest,
                "trials": wf.trials_per_window or spec.trials,
                "parallelism": min(spec.parallelism, wf.trials_per_window or spec.trials),
                "validation": None,
            }
        )
        definition = _window_definition(window_spec, bars, is_first, is_last)
        study_name = window_study_key(key, window.index, definition)
        driver = StudyDriver(
            window_spec,
            study_name=study_name,
            storage_url=default_storage_url(study_name, data_dir),
            evaluator=evaluator,
        )
        summary = driver.run()
        if summary.best_trial is None:
            raise SpecError("validation.walkForward", f"window {window.index}: no trial completed in sample")
        run = BacktestRunner(
            trial_spec(_with_range(spec.backtest, is_first.date(), oos_last.date()), summary.best_params)
        ).run()
        stitched = stitcher.add(window.index, run.bar_equity, run.trades, closes, is_last, oos_last)
        daily_oos = _daily(stitched.equity)
        if run.benchmark_returns is not None:
            oos_benchmark.append(run.benchmark_returns[run.benchmark_returns.index > is_last.normalize()])
        is_equity = run.equity[run.equity.index <= is_last]
        in_sample_metrics.append(compute_metrics(is_equity))
        oos_returns = daily_oos.pct_change()
        oos_returns.iloc[0] = daily_oos.iloc[0] / stitched.value_before - 1  # from the value before the switch
        oos_value = compute_metrics((1 + oos_returns).cumprod() * spec.backtest.broker.cash).get(metric)
        window_reports.append(
            WindowReport(
                index=window.index,
                in_sample=(_label(is_first, intraday), _label(is_last, intraday)),
                out_of_sample=(_label(oos_first, intraday), _label(oos_last, intraday)),
                in_sample_bars=window.in_end - window.in_start,
                out_of_sample_bars=window.out_end - window.out_start,
                boundary=_label(is_last, intraday),
                study_name=study_name,
                best_params=summary.best_params,
                in_sample_value=summary.best_value,
                out_of_sample_value=oos_value,
                trials_complete=summary.trials_complete,
                switch_shares=stitched.switch_shares,
                switch_cost=stitched.switch_cost,
                deflated_sharpe=_window_deflated_sharpe(study_name, data_dir, summary.best_returns),
                pbo=_pbo(driver),
            )
        )
        log.info("walk-forward window %s: IS %s=%s, OOS %s", window.index, metric, summary.best_value, oos_value)
    bar_equity = stitcher.equity()
    equity = _daily(bar_equity)
    benchmark = pd.concat(oos_benchmark) if oos_benchmark else None
    if benchmark is not None:
        benchmark = benchmark[~benchmark.index.duplicated()]
    trades = stitcher.trades()
    oos_metrics = compute_metrics(equity, trades=trades, benchmark_returns=benchmark)
    mean_is = _mean_metrics(in_sample_metrics)
    is_cagr, oos_cagr = mean_is.get("cagr"), oos_metrics.get("cagr")
    efficiency = oos_cagr / is_cagr if is_cagr and oos_cagr is not None else None
    report = WalkForwardReport(
        name=name,
        metric=metric,
        anchored=wf.anchored,
        windows=window_reports,
        out_of_sample_metrics=oos_metrics,
        in_sample_metrics=mean_is,
        efficiency=efficiency,
    )
    out = output_dir / "walkforward"
    out.mkdir(parents=True, exist_ok=True)
    bar_equity.rename("equity").to_csv(
        out / f"{name}-oos-equity.csv", index_label="date" if not intraday else "datetime"
    )
    report.artifacts["oos_equity"] = f"{name}-oos-equity.csv"
    trades.to_csv(out / f"{name}-oos-trades.csv", index=False)
    report.artifacts["oos_trades"] = f"{name}-oos-trades.csv"
    report.artifacts["plot"] = _plot(
        equity, benchmark, window_reports, out / f"{name}-oos.png", name, spec.backtest.broker.cash
    ).name
    page = write_walk_forward_page(
        report, equity, benchmark, out / f"{name}-robustness.html", spec.backtest.broker.cash
    )
    report.artifacts["robustness"] = page.name
    if spec.backtest.tracking.enabled:
        from kubetrader.tracking.studies import log_walk_forward

        report.mlflow_run_id = log_walk_forward(spec, report, out)
    (out / f"{name}.json").write_text(json.dumps(report.model_dump(mode="json"), indent=2))
    return report


def _window_definition(
    window_spec: OptimizationStudySpec, bars: dict[str, Any], first: Any, last: Any
) -> dict[str, Any]:
    """Everything that defines a window's study: its backtest (dates, costs, strategy), the
    space, constraints, objective, and the hash of the bars its trials see."""
    from kubetrader.data.frames import data_hash

    wire = window_spec.to_wire()
    hashes = {
        s: data_hash(frame[(frame.index >= first.normalize()) & (frame.index.normalize() <= last.normalize())])
        for s, frame in bars.items()
    }
    return {
        "backtest": wire["backtest"],
        "space": wire["space"],
        "constraints": wire.get("constraints", []),
        "objective": wire.get("objective"),
        "data": hashes,
    }


def _label(stamp: Any, intraday: bool) -> str:
    return str(stamp.isoformat()) if intraday else str(stamp.date().isoformat())


def _daily(equity: Any) -> Any:
    """The last value of each day (metrics are daily); daily data is unchanged."""
    days = equity.index.normalize()
    if days.is_unique and (days == equity.index).all():
        return equity
    daily = equity.groupby(days).last()
    daily.index.name = None
    return daily


def _with_range(backtest: Any, start: Any, end: Any) -> Any:
    return backtest.model_copy(update={"data": backtest.data.model_copy(update={"start": start, "end": end})})


def _mean_metrics(rows: list[dict[str, float | None]]) -> dict[str, float | None]:
    names = rows[0].keys() if rows else []
    out: dict[str, float | None] = {}
    for key in names:
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = sum(values) / len(values) if values else None  # type: ignore[arg-type]
    return out


def _plot(equity: Any, benchmark: Any, windows: list[WindowReport], path: Path, name: str, cash: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    ax.plot(equity.index, equity.to_numpy(), color="#1f77b4", linewidth=1.2, label="out-of-sample equity")
    if benchmark is not None and len(benchmark):
        line = (1 + benchmark.reindex(equity.index).fillna(0.0)).cumprod() * cash
        ax.plot(line.index, line.to_numpy(), color="#888", linewidth=1.0, label="benchmark (buy and hold)")
    for w in windows:
        start = pd.Timestamp(w.out_of_sample[0]).tz_localize(None).to_pydatetime()
        ax.axvline(float(mdates.date2num(start)), color="#999", linewidth=0.6, linestyle=":")
    ax.set_title(f"Walk-forward {name}: stitched out-of-sample equity ({len(windows)} windows)")
    ax.set_ylabel("equity")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _window_deflated_sharpe(study_name: str, data_dir: Path, best_returns: list[float] | None) -> float | None:
    import optuna

    study = optuna.load_study(study_name=study_name, storage=open_storage(default_storage_url(study_name, data_dir)))
    return deflated_sharpe_of_study(study, best_returns).value
