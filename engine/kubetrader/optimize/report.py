"""What a finished study leaves behind: a JSON report, the best parameters, and one
self-contained HTML page of Optuna's own Plotly charts (optimization history,
parameter importances, parallel coordinates), plotly.js embedded once so it opens
offline."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from kubetrader.optimize.overfitting import DeflatedSharpe

log = logging.getLogger(__name__)


class StudyReport(BaseModel):
    """The outcome of a study, as written to `{output}/studies/{name}.json`."""

    study_name: str
    storage: str
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
    artifacts: dict[str, str] = Field(default_factory=dict)
    mlflow_parent_run_id: str | None = None


def write_study_artifacts(study: Any, out_dir: Path, name: str, best_params: dict[str, Any]) -> dict[str, str]:
    """Best params JSON and the charts page; returns paths relative to `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    artifacts: dict[str, str] = {}
    best_path = out_dir / f"{name}-best-params.json"
    best_path.write_text(json.dumps(best_params, indent=2, sort_keys=True))
    artifacts["best_params"] = best_path.name
    figures = _figures(study)
    if figures:
        page = out_dir / f"{name}-charts.html"
        parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)]
        page.write_text(
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>Study {name}</title></head><body><h1>Study {name}</h1>" + "".join(parts) + "</body></html>"
        )
        artifacts["charts"] = page.name
    return artifacts


def _figures(study: Any) -> list[Any]:
    from optuna import visualization as vis
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    figures = []
    if complete:
        figures.append(vis.plot_optimization_history(study))
    if len(complete) >= 2 and len(complete[0].params) >= 1:
        try:
            figures.append(vis.plot_param_importances(study))
        except (RuntimeError, ValueError) as exc:  # importances need variation in values and params
            log.info("no parameter importances: %s", exc)
        figures.append(vis.plot_parallel_coordinate(study))
    return figures
