"""Every sampler reaches its trial budget: grid ends cleanly on an exhausted grid, TPE is not
stalled by constraints (infeasible points are told to Optuna as constraint violations)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from kubetrader.optimize.evaluation import InProcessEvaluator
from kubetrader.optimize.service import run_study
from kubetrader.optimize.study import StudyDriver, open_storage
from kubetrader.specs import BacktestSpec, OptimizationStudySpec

BACKTEST: dict[str, Any] = {
    "strategy": {"path": "strategies.sma_crossover.SMACrossover"},
    "data": {"symbols": ["ORCL"], "start": "2010-01-01", "end": "2011-12-31"},
}


def quadratic(spec: BacktestSpec) -> tuple[dict[str, float | None], list[float]]:
    """A trial that runs nothing: its value peaks at fast=23, slow=13, outside `fast < slow`."""
    fast, slow = float(spec.strategy.params["fast"]), float(spec.strategy.params["slow"])  # type: ignore[arg-type]
    value = -((fast - 23) ** 2) - (slow - 13) ** 2
    return {"sharpe_ratio": value, "total_return": value / 100}, [value / 1e4] * 64


def test_grid_sampler_with_more_trials_than_points_runs_the_whole_grid_and_reports(tmp_path: Path) -> None:
    spec = OptimizationStudySpec.model_validate(
        {
            "backtest": BACKTEST,
            "space": {
                "fast": {"type": "int", "low": 5, "high": 15, "step": 5},
                "slow": {"type": "int", "low": 30, "high": 40, "step": 10},
            },
            "trials": 10,
            "sampler": {"type": "grid"},
        }
    )
    report = run_study(
        spec,
        name="grid-all",
        output_dir=tmp_path / "out",
        storage_url=f"journal://{tmp_path / 'grid.log'}",
        evaluator=InProcessEvaluator(run=quadratic),
        confirm=False,
    )
    assert report.trials_complete == 6  # the whole 3 x 2 grid, then a clean stop
    assert report.best_params == {"fast": 15, "slow": 30}
    studies = tmp_path / "out" / "studies"
    assert (studies / "grid-all.json").exists()
    page = studies / report.artifacts["charts"]
    assert 10_000 < page.stat().st_size < 1_000_000  # static charts: no 4.6 MB of plotly.js inline
    assert "Plateau score" in page.read_text() and page.read_text().count("<img") >= 4
    import pandas as pd

    table = pd.read_csv(studies / report.artifacts["trials"])
    assert len(table) == 6 and set(table["state"]) == {"COMPLETE"}
    assert table.loc[table["value"].idxmax(), ["param_fast", "param_slow"]].tolist() == [15, 30]


def test_tpe_with_a_constraint_reaches_its_trial_count_without_repeating_infeasible_points(tmp_path: Path) -> None:
    spec = OptimizationStudySpec.model_validate(
        {
            "backtest": BACKTEST,
            "space": {"fast": {"type": "int", "low": 5, "high": 30}, "slow": {"type": "int", "low": 10, "high": 35}},
            "constraints": ["fast < slow"],
            "trials": 25,
            "sampler": {"type": "tpe", "seed": 1, "startupTrials": 5},
        }
    )
    driver = StudyDriver(
        spec,
        study_name="tpe-constrained",
        storage_url=f"journal://{tmp_path / 'tpe.log'}",
        evaluator=InProcessEvaluator(run=quadratic),
    )
    summary = driver.run()
    assert summary.trials_complete == 25
    assert summary.best_params["fast"] < summary.best_params["slow"]
    import optuna

    study = optuna.load_study(study_name="tpe-constrained", storage=open_storage(f"journal://{tmp_path / 'tpe.log'}"))
    infeasible = Counter(
        (t.params["fast"], t.params["slow"]) for t in study.get_trials(deepcopy=False) if t.user_attrs.get("infeasible")
    )
    assert summary.trials_infeasible == sum(infeasible.values())
    assert summary.trials_infeasible < 100
    assert max(infeasible.values(), default=0) <= 3  # the sampler learns where the constraint bites


def test_a_median_pruner_is_refused_with_the_field_named_rather_than_ignored() -> None:
    import pydantic
    import pytest

    with pytest.raises(pydantic.ValidationError) as caught:
        OptimizationStudySpec.model_validate(
            {"backtest": BACKTEST, "space": {"fast": {"type": "int", "low": 5, "high": 10}}, "pruner": "median"}
        )
    assert "pruner" in str(caught.value) and "not supported" in str(caught.value)


def test_a_screened_study_tells_infeasible_points_as_constraint_violations_and_reaches_its_count(
    monkeypatch: Any,
) -> None:
    """Issue 22 item 5 for `screen: vectorized`: the screen's in-memory study told infeasible points
    FAIL, which TPE ignores, so it proposed the peak (23, 13), outside `fast < slow`, over and over.
    The twin is replaced by the same quadratic the driver test uses; the sampler's path is taken
    (one point per batch, as the driver asks)."""
    import numpy as np
    import optuna

    from kubetrader.optimize import screening

    def twin(spec: Any, points: list[dict[str, Any]], **_: Any) -> tuple[Any, Any]:
        values = np.array([-((p["fast"] - 23) ** 2) - (p["slow"] - 13) ** 2 for p in points], dtype=float)
        return values, values / 1e3

    studies: list[Any] = []
    create = optuna.create_study

    def recording_create_study(*args: Any, **kwargs: Any) -> Any:
        studies.append(create(*args, **kwargs))
        return studies[-1]

    monkeypatch.setattr(screening, "score", twin)
    monkeypatch.setattr(optuna, "create_study", recording_create_study)
    spec = OptimizationStudySpec.model_validate(
        {
            "backtest": BACKTEST,
            "space": {"fast": {"type": "int", "low": 5, "high": 30}, "slow": {"type": "int", "low": 10, "high": 35}},
            "constraints": ["fast < slow"],
            "trials": 25,
            "sampler": {"type": "tpe", "seed": 1, "startupTrials": 5},
            "screen": "vectorized",
        }
    )
    screen = screening.screen_points(spec, None, bars=None, cache=None, frames=None, chunk=1)
    assert screen.mode == "sampler" and len(screen.points) == 25
    assert all(p["fast"] < p["slow"] for p in screen.points)
    (study,) = studies
    infeasible = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("infeasible")]
    assert all(t.state.name == "COMPLETE" and max(t.constraints.values()) > 0 for t in infeasible)
    assert len(infeasible) < 100
    assert max(Counter((t.params["fast"], t.params["slow"]) for t in infeasible).values(), default=0) <= 3


def test_tpe_computes_log_phi_vectorized_and_agrees_with_optunas_own_function() -> None:
    """The TPE sampler's log Phi is SciPy's compiled one (kubetrader.optimize.samplers), equal to
    Optuna's per-element Python function over the range TPE meets (both tails): within 1e-12
    relative, or 1e-15 absolute near x = 6, where Optuna's log(1 - tiny) loses digits SciPy keeps."""
    import numpy as np
    import scipy.special
    from optuna.samplers._tpe import _truncnorm

    from kubetrader.optimize.study import build_sampler
    from kubetrader.specs.study import SamplerSpec

    build_sampler(SamplerSpec(type="tpe", seed=1), {}, None)
    assert _truncnorm._log_ndtr is scipy.special.log_ndtr  # fails loudly when Optuna's layout changes
    points = np.concatenate([np.linspace(-60, 12, 20_001), [-1e3, -37.5, 0.0, 6.0, 6.0001, 20.0]])
    optunas = np.array([_truncnorm._log_ndtr_single(float(x)) for x in points])
    ours = _truncnorm._log_ndtr(points)
    assert np.allclose(ours, optunas, rtol=1e-12, atol=1e-15)
