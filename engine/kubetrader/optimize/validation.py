"""Walk-forward validation: optimise on each in-sample window, trade the winner on the
next unseen window, stitch the out-of-sample stretches into one track record.

The out-of-sample run of a window starts at the window's in-sample start and only the
returns on out-of-sample dates are kept: indicators are warm when the unseen stretch
begins (a 200-day average would otherwise sit idle for most of it), and the position
carried into the window is the one the chosen parameters held. Nothing from the
out-of-sample dates feeds the choice of parameters.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from kubetrader.errors import SpecError
from kubetrader.optimize.evaluation import Evaluator, InProcessEvaluator
from kubetrader.optimize.study import StudyDriver, default_storage_url, trial_spec
from kubetrader.optimize.walkforward import walk_forward_windows
from kubetrader.specs.study import OptimizationStudySpec

log = logging.getLogger(__name__)


class WindowReport(BaseModel):
    index: int
    in_sample: tuple[str, str]
    out_of_sample: tuple[str, str]
    best_params: dict[str, Any]
    in_sample_value: float | None
    out_of_sample_value: float | None
    trials_complete: int


class WalkForwardReport(BaseModel):
    name: str
    metric: str
    anchored: bool
    windows: list[WindowReport]
    out_of_sample_metrics: dict[str, float | None] = Field(description="Metrics of the stitched OOS curve.")
    in_sample_metrics: dict[str, float | None] = Field(description="Mean over windows of the in-sample metrics.")
    efficiency: float | None = Field(description="OOS CAGR / mean in-sample CAGR (walk-forward efficiency).")
    artifacts: dict[str, str] = Field(default_factory=dict)


def run_walk_forward(
    spec: OptimizationStudySpec,
    *,
    name: str,
    output_dir: Path,
    data_dir: Path,
    evaluator: Evaluator | None = None,
) -> WalkForwardReport:
    import pandas as pd

    from kubetrader.data import load_bars
    from kubetrader.metrics import compute_metrics
    from kubetrader.runner import BacktestRunner

    if spec.validation is None or spec.validation.walk_forward is None:
        raise SpecError("validation.walkForward", "required for a walk-forward run")
    wf = spec.validation.walk_forward
    data = spec.backtest.data
    dates = load_bars(data.symbols[0], timeframe=data.timeframe, start=data.start, end=data.end).index
    windows = walk_forward_windows(len(dates), wf.in_sample, wf.out_of_sample, anchored=wf.anchored)
    evaluator = evaluator or InProcessEvaluator()
    metric = spec.objective.metric
    window_reports: list[WindowReport] = []
    oos_returns: list[pd.Series] = []
    oos_benchmark: list[pd.Series] = []
    oos_trades: list[pd.DataFrame] = []
    in_sample_metrics: list[dict[str, float | None]] = []
    for window in windows:
        day = [d.date() for d in dates]
        is_start, is_end = day[window.in_start], day[window.in_end - 1]
        oos_start, oos_end = day[window.out_start], day[window.out_end - 1]
        window_spec = spec.model_copy(
            update={
                "backtest": _with_range(spec.backtest, is_start, is_end),
                "trials": wf.trials_per_window or spec.trials,
                "parallelism": min(spec.parallelism, wf.trials_per_window or spec.trials),
                "validation": None,
            }
        )
        study_name = f"{name}-w{window.index}"
        summary = StudyDriver(
            window_spec,
            study_name=study_name,
            storage_url=default_storage_url(study_name, data_dir),
            evaluator=evaluator,
        ).run()
        if summary.best_trial is None:
            raise SpecError("validation.walkForward", f"window {window.index}: no trial completed in sample")
        run = BacktestRunner(trial_spec(_with_range(spec.backtest, is_start, oos_end), summary.best_params)).run()
        returns = run.equity.pct_change().fillna(0.0)
        local_days = returns.index.date if hasattr(returns.index, "date") else returns.index
        in_oos = (local_days >= oos_start) & (local_days <= oos_end)
        oos = returns[in_oos]
        oos_returns.append(oos)
        if run.benchmark_returns is not None:
            oos_benchmark.append(run.benchmark_returns[in_oos])
        closed = run.closed_trades
        exits = pd.to_datetime(closed["exit_time"], utc=True).dt.date
        oos_trades.append(closed[(exits >= oos_start) & (exits <= oos_end)])
        is_equity = run.equity[(local_days >= is_start) & (local_days <= is_end)]
        is_metrics = compute_metrics(is_equity)
        in_sample_metrics.append(is_metrics)
        oos_value = compute_metrics((1 + oos).cumprod() * spec.backtest.broker.cash).get(metric)
        window_reports.append(
            WindowReport(
                index=window.index,
                in_sample=(is_start.isoformat(), is_end.isoformat()),
                out_of_sample=(oos_start.isoformat(), oos_end.isoformat()),
                best_params=summary.best_params,
                in_sample_value=summary.best_value,
                out_of_sample_value=oos_value,
                trials_complete=summary.trials_complete,
            )
        )
        log.info("walk-forward window %s: IS %s=%s, OOS %s", window.index, metric, summary.best_value, oos_value)
    stitched = pd.concat(oos_returns)
    stitched = stitched[~stitched.index.duplicated()]
    equity = (1 + stitched).cumprod() * spec.backtest.broker.cash
    benchmark = pd.concat(oos_benchmark) if oos_benchmark else None
    if benchmark is not None:
        benchmark = benchmark[~benchmark.index.duplicated()]
    trades = pd.concat(oos_trades, ignore_index=True) if oos_trades else None
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
    equity.rename("equity").to_csv(out / f"{name}-oos-equity.csv", index_label="date")
    report.artifacts["oos_equity"] = f"{name}-oos-equity.csv"
    report.artifacts["plot"] = _plot(equity, window_reports, out / f"{name}-oos.png", name).name
    (out / f"{name}.json").write_text(json.dumps(report.model_dump(mode="json"), indent=2))
    return report


def _with_range(backtest: Any, start: Any, end: Any) -> Any:
    return backtest.model_copy(update={"data": backtest.data.model_copy(update={"start": start, "end": end})})


def _mean_metrics(rows: list[dict[str, float | None]]) -> dict[str, float | None]:
    names = rows[0].keys() if rows else []
    out: dict[str, float | None] = {}
    for key in names:
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = sum(values) / len(values) if values else None  # type: ignore[arg-type]
    return out


def _plot(equity: Any, windows: list[WindowReport], path: Path, name: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    ax.plot(equity.index, equity.to_numpy(), color="#1f77b4", linewidth=1.2, label="out-of-sample equity")
    for w in windows:
        start = pd.Timestamp(w.out_of_sample[0], tz=equity.index.tz).to_pydatetime()
        ax.axvline(float(mdates.date2num(start)), color="#999", linewidth=0.6, linestyle=":")
    ax.set_title(f"Walk-forward {name}: stitched out-of-sample equity ({len(windows)} windows)")
    ax.set_ylabel("equity")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
