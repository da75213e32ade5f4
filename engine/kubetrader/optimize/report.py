"""What a finished study leaves behind: a JSON report, the best parameters, the trial
table, the robustness numbers and one static HTML charts page (Optuna's charts and the
robustness view); and the walk-forward page. Plots live here; the numbers they show
come from kubetrader.optimize.robustness."""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from kubetrader.optimize.overfitting import DeflatedSharpe
from kubetrader.optimize.robustness import Heatmap, Robustness, TrialPoint, robustness
from kubetrader.optimize.space import Space, parse_space
from kubetrader.redaction import redact_uri

log = logging.getLogger(__name__)


class StudyReport(BaseModel):
    """The outcome of a study, as written to `{output}/studies/{name}.json`."""

    study_name: str
    storage: str = Field(description="The Optuna storage URL, its credentials masked (kubetrader.redaction).")
    metric: str
    direction: str
    trials_complete: int
    trials_failed: int
    trials_infeasible: int
    best_value: float | None
    best_params: dict[str, Any]
    best_trial: int | None
    deflated_sharpe: float | None = Field(default=None, description="P[best Sharpe > luck of N trials].")
    deflated_sharpe_conventions: DeflatedSharpe | None = Field(
        default=None, description="How the DSR was computed: trials, distinct trials, variance, per period."
    )
    pbo: float | None = Field(default=None, description="Probability of backtest overfitting (CSCV).")
    confirmed_result: str | None = Field(default=None, description="Full result of the best params, re-run.")
    confirmed_metrics: dict[str, float | None] = Field(default_factory=dict)
    confirmed_run_id: str | None = Field(default=None, description="MLflow run of the confirmed best backtest.")
    spec: dict[str, Any] | None = Field(default=None, description="The study's spec (wire form), for `mlflow sync`.")
    artifacts: dict[str, str] = Field(default_factory=dict)
    mlflow_parent_run_id: str | None = None

    @field_validator("storage")
    @classmethod
    def _without_credentials(cls, value: str) -> str:
        """The report sits on the shared results volume (which Jobs running user strategies can
        write and the dashboard serves) and is printed by the CLI: a PostgreSQL password Kubernetes
        expanded into the driver's storage URL must not be written down with it. `mlflow sync`
        takes the real URL from KUBETRADER_OPTUNA_STORAGE (kubetrader.tracking.studies)."""
        return redact_uri(value) or value


def write_study_artifacts(study: Any, out_dir: Path, name: str, best_params: dict[str, Any]) -> dict[str, str]:
    """Best params JSON, the trial table (CSV), the robustness numbers (JSON) and the charts
    page; returns paths relative to `out_dir`.

    The charts page is static: Optuna's own charts drawn with its matplotlib backend
    (optuna.visualization.matplotlib) and the robustness view, as inline PNGs, with the
    neighbourhood and top-K tables. A page of Plotly figures embeds plotly.js (about
    4.6 MB) to open offline; this one opens offline, in MLflow's artifact viewer and in a
    mail, at well under 1 MB. The dashboard draws the interactive versions.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    artifacts: dict[str, str] = {}
    best_path = out_dir / f"{name}-best-params.json"
    best_path.write_text(json.dumps(best_params, indent=2, sort_keys=True))
    artifacts["best_params"] = best_path.name
    table = trial_table(study)
    trials_path = out_dir / f"{name}-trials.csv"
    table.to_csv(trials_path, index=False)
    artifacts["trials"] = trials_path.name
    view = study_robustness(study)
    robust_path = out_dir / f"{name}-robustness.json"
    robust_path.write_text(view.model_dump_json(indent=2))
    artifacts["robustness"] = robust_path.name
    feasible = _feasible_copy(study)
    if feasible.trials:
        page = out_dir / f"{name}-charts.html"
        page.write_text(_study_page(name, feasible, view))
        artifacts["charts"] = page.name
    return artifacts


def trial_table(study: Any) -> Any:
    """One row per trial: number, state, value, params, the headline metrics, start and end."""
    import pandas as pd

    from kubetrader.optimize.study import ATTR_METRICS, is_infeasible

    rows = []
    for t in study.get_trials(deepcopy=False):
        metrics = t.user_attrs.get(ATTR_METRICS, {})
        rows.append(
            {
                "number": t.number,
                "state": "INFEASIBLE" if is_infeasible(t) else t.state.name,
                "value": None if is_infeasible(t) else t.value,
                **{f"param_{k}": v for k, v in t.params.items()},
                **{k: metrics.get(k) for k in TABLE_METRICS},
                "started": t.datetime_start.isoformat() if t.datetime_start else None,
                "finished": t.datetime_complete.isoformat() if t.datetime_complete else None,
            }
        )
    return pd.DataFrame(rows)


TABLE_METRICS = ("sharpe_ratio", "total_return", "cagr", "max_drawdown", "total_trades")


def space_of_study(study: Any) -> Space:
    """The parameter space as the study's trials recorded it (Optuna's distributions)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from kubetrader.optimize.study import feasible_trials

    raw: dict[str, Any] = {}
    for t in feasible_trials(study):
        for key, d in t.distributions.items():
            if isinstance(d, IntDistribution):
                raw[key] = {"type": "int", "low": d.low, "high": d.high, "step": d.step, "log": d.log}
            elif isinstance(d, FloatDistribution):
                raw[key] = {"type": "float", "low": d.low, "high": d.high, "step": d.step, "log": d.log}
            elif isinstance(d, CategoricalDistribution):
                raw[key] = {"type": "categorical", "choices": list(d.choices)}
    return parse_space(raw) if raw else {}


def study_robustness(study: Any, k: int = 10) -> Robustness:
    """The robustness numbers of a study (kubetrader.optimize.robustness) from its trials."""
    from kubetrader.optimize.study import feasible_trials

    points = [
        TrialPoint(number=t.number, params=dict(t.params), value=float(t.value))
        for t in feasible_trials(study)
        if t.value is not None
    ]
    direction = "maximize" if study.direction.name == "MAXIMIZE" else "minimize"
    return robustness(points, space_of_study(study), direction, k=k)


def _feasible_copy(study: Any) -> Any:
    """An in-memory study holding only the real evaluations (Optuna's charts would plot
    infeasible points, told with a placeholder value, as trials)."""
    import optuna

    from kubetrader.optimize.study import feasible_trials

    copy = optuna.create_study(direction=study.direction)
    copy.add_trials(feasible_trials(study))
    return copy


def _png(fig: Any) -> str:
    import base64
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "<img alt='chart' src='data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode() + "'>"


def _study_page(name: str, study: Any, view: Robustness) -> str:
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    images: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
        images.append(_png(vis.plot_optimization_history(study).figure))
        if len(study.trials) >= 2 and study.trials[0].params:
            try:
                images.append(_png(vis.plot_param_importances(study).figure))
            except (RuntimeError, ValueError) as exc:  # importances need variation in values and params
                log.info("no parameter importances: %s", exc)
            axes = vis.plot_slice(study)
            images.append(_png((axes.flat[0] if hasattr(axes, "flat") else axes).figure))
            if len(study.trials[0].params) >= 2:
                images.append(_png(vis.plot_parallel_coordinate(study).figure))
    if view.heatmap is not None:
        images.append(_png(_heatmap_figure(view.heatmap, plt)))
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Study {html.escape(name)}</title><style>{_CSS}</style></head><body>"
        f"<h1>Study {html.escape(name)}</h1>" + _robustness_tables(view) + "".join(images) + "</body></html>"
    )


_CSS = (
    "body{font-family:sans-serif;max-width:1000px}table{border-collapse:collapse}"
    "td,th{padding:2px 8px;border:1px solid #ccc}img{max-width:100%}"
)


def _robustness_tables(view: Robustness) -> str:
    score = "n/a" if view.plateau_score is None else f"{view.plateau_score:.2f}"
    parts = [
        "<h2>Robustness</h2>",
        f"<p>Plateau score <b>{score}</b> (1: the neighbours are as good as the best point, 0: no better than the"
        " median trial).</p>",
    ]
    if view.best is not None:
        parts.append(
            f"<p>Best point: trial {view.best.number}, {html.escape(str(view.best.params))}, value"
            f" {view.best.value:.6g}</p>"
        )
        rows = "".join(
            f"<tr><td>{html.escape(n.param)}</td><td>{n.side}</td><td>{html.escape(str(n.value_of_param))}</td>"
            f"<td>{'not evaluated' if n.objective is None else f'{n.objective:.6g}'}</td>"
            f"<td>{'' if n.drop is None else f'{n.drop:.6g}'}</td></tr>"
            for n in view.neighbours
        )
        parts.append(
            "<h3>One step away</h3><table><tr><th>parameter</th><th>step</th><th>value</th><th>objective</th>"
            f"<th>drop</th></tr>{rows}</table>"
        )
    top = "".join(
        f"<tr><td>{p.number}</td><td>{p.value:.6g}</td><td>{html.escape(str(p.params))}</td></tr>" for p in view.top
    )
    parts.append(
        f"<h3>Top {len(view.top)}</h3><table><tr><th>trial</th><th>value</th><th>params</th></tr>{top}</table>"
    )
    return "".join(parts)


def _heatmap_figure(grid: Heatmap, plt: Any) -> Any:
    import numpy as np

    z = np.array([[np.nan if v is None else v for v in row] for row in grid.z], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    image = ax.imshow(z, origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(grid.x)), [str(v) for v in grid.x], rotation=45)
    ax.set_yticks(range(len(grid.y)), [str(v) for v in grid.y])
    ax.set_xlabel(grid.x_param)
    ax.set_ylabel(grid.y_param)
    ax.set_title("Mean objective by parameter pair (blank: not evaluated)")
    fig.colorbar(image, ax=ax)
    return fig


def write_walk_forward_page(report: Any, equity: Any, benchmark: Any, path: Path, cash: float) -> Path:
    """The walk-forward robustness page: per-window in-sample vs out-of-sample values,
    parameter stability across windows, an IS-vs-OOS scatter, and the stitched
    out-of-sample equity with the benchmark; static PNGs, offline, well under 1 MB."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    windows = report.windows
    index = [w.index for w in windows]
    is_values = [np.nan if w.in_sample_value is None else w.in_sample_value for w in windows]
    oos_values = [np.nan if w.out_of_sample_value is None else w.out_of_sample_value for w in windows]
    images = []
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.4
    ax.bar([i - width / 2 for i in index], is_values, width, label="in sample (best trial)")
    ax.bar([i + width / 2 for i in index], oos_values, width, label="out of sample")
    ax.set_xlabel("window")
    ax.set_ylabel(report.metric)
    ax.legend()
    ax.set_title("In sample vs out of sample, per window")
    images.append(_png(fig))
    names = sorted({k for w in windows for k in w.best_params})
    fig, axes = plt.subplots(len(names) or 1, 1, figsize=(8, 1.8 * max(len(names), 1)), squeeze=False)
    for ax, param in zip(axes.flat, names, strict=False):
        values = [w.best_params.get(param) for w in windows]
        numeric = all(isinstance(v, int | float) for v in values)
        ax.plot(index, values if numeric else [str(v) for v in values], marker="o")
        ax.set_ylabel(param)
    axes.flat[0].set_title("Chosen parameters across windows (stability)")
    images.append(_png(fig))
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(is_values, oos_values)
    for i, x, y in zip(index, is_values, oos_values, strict=True):
        ax.annotate(str(i), (x, y))
    ax.axhline(0, color="#999", linewidth=0.6)
    ax.set_xlabel(f"in-sample {report.metric}")
    ax.set_ylabel(f"out-of-sample {report.metric}")
    ax.set_title("In sample vs out of sample")
    images.append(_png(fig))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(equity.index, equity.to_numpy(), label="stitched out-of-sample equity")
    if benchmark is not None and len(benchmark):
        line = (1 + benchmark.reindex(equity.index).fillna(0.0)).cumprod() * cash
        ax.plot(line.index, line.to_numpy(), color="#888", label="benchmark (buy and hold)")
    ax.legend(loc="upper left")
    images.append(_png(fig))
    rows = "".join(
        f"<tr><td>{w.index}</td><td>{w.in_sample[0]} .. {w.in_sample[1]}</td><td>{w.in_sample_bars}</td>"
        f"<td>{w.out_of_sample[0]} .. {w.out_of_sample[1]}</td><td>{w.out_of_sample_bars}</td>"
        f"<td>{html.escape(str(w.best_params))}</td><td>{w.in_sample_value}</td><td>{w.out_of_sample_value}</td>"
        f"<td>{w.deflated_sharpe}</td><td>{w.pbo}</td><td>{w.switch_cost:.2f}</td></tr>"
        for w in windows
    )
    table = (
        "<table><tr><th>window</th><th>in sample</th><th>bars</th><th>out of sample</th><th>bars</th>"
        "<th>params</th><th>IS value</th><th>OOS value</th><th>DSR</th><th>PBO</th><th>switch cost</th></tr>"
        f"{rows}</table>"
    )
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Walk-forward {html.escape(report.name)}</title><style>{_CSS}</style></head><body>"
        f"<h1>Walk-forward {html.escape(report.name)}</h1><p>Efficiency {report.efficiency}</p>"
        + table
        + "".join(images)
        + "</body></html>"
    )
    return path
