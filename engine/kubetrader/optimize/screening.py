"""Screened studies (`screen: vectorized`): the twin scores every point, Backtrader confirms the best.

Why: a grid of thousands of points costs minutes to hours in Backtrader and about a
second with a strategy's exact vectorized twin (kubetrader.vectorized). The twin is
only a filter; Backtrader stays the engine of record. The steps, exactly:

1. The template must be screenable (`vectorized.not_screenable`); otherwise the
   study runs on Backtrader alone, as with `screen: none`, and says why in the log.
2. Points: the whole feasible grid when every parameter is discrete (ints,
   categoricals, floats with a step) and the grid has at most `MAX_GRID_POINTS`
   points; otherwise `trials` points from the study's sampler (TPE, random, ...)
   in an in-memory Optuna study whose objective is the twin.
3. Scoring, `chunk` points at a time (memory stays bounded): equity curves from
   the twin, metrics from `compute_metrics_batch` (or `compute_metrics` per point
   for metrics that need the trade list). Points the strategy refuses score NaN.
4. Self-check: `self_check_points` scored points spread over the list are run on
   both engines on the study's own data (equity, trades, every metric); any
   difference refuses the twin, loudly, before a single score is used.
5. Confirmation: the best `confirm_top` points are backtested on Backtrader through
   the normal evaluator (in process, or the work queue), recorded as the study's
   Optuna trials. A confirmed objective further than 1e-9 relative from the
   twin's fails the study with both numbers (`ScreeningMismatchError`).
6. The report's best value, params and confirmed result come from those Backtrader
   runs only. The twin's scores go to `{study}-screen.csv` and a summary to
   `{study}-screen.json`. The deflated Sharpe ratio counts every screened point as
   a trial (the twin's Sharpe ratios are the trial population).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kubetrader.errors import FatalError, SpecError
from kubetrader.optimize.evaluation import Evaluation, Evaluator, InProcessEvaluator
from kubetrader.optimize.report import StudyReport, write_study_artifacts
from kubetrader.optimize.study import StudyProgress, build_sampler, default_storage_url, open_storage, trial_spec
from kubetrader.specs.study import OptimizationStudySpec

log = logging.getLogger(__name__)

MAX_GRID_POINTS = 2_000_000
MISMATCH_REL = 1e-9
ATTR_TWIN = "twin_value"
ATTR_RANK = "screen_rank"


class ScreeningMismatchError(FatalError):
    """The twin and Backtrader disagree: the twin must not be trusted for this study."""


@dataclass
class Screen:
    """Every screened point with the twin's objective (NaN: the strategy refuses the point)."""

    points: list[dict[str, Any]]
    objective: np.ndarray
    sharpe: np.ndarray | None
    seconds: float
    mode: str


def run_screened_study(
    spec: OptimizationStudySpec,
    *,
    name: str,
    output_dir: Path,
    storage_url: str | None = None,
    evaluator: Evaluator | None = None,
    on_progress: Callable[[StudyProgress], None] | None = None,
    confirm: bool = True,
    self_check_points: int = 2,
    chunk: int = 512,
) -> StudyReport:
    """Screen with the twin, confirm the top `spec.confirm_top` on Backtrader, report Backtrader's results."""
    from kubetrader.vectorized import not_screenable

    reason = not_screenable(spec.backtest)
    if reason is not None:
        from kubetrader.optimize.service import run_study

        log.warning("screen: vectorized is not possible (%s); running the study on Backtrader alone", reason)
        return run_study(
            spec.model_copy(update={"screen": "none"}),
            name=name,
            output_dir=output_dir,
            storage_url=storage_url,
            evaluator=evaluator,
            on_progress=on_progress,
            confirm=confirm,
        )
    from kubetrader.runner import BacktestRunner
    from kubetrader.vectorized import Bars, IndicatorCache

    study_name = spec.study_name or name
    frames = BacktestRunner(spec.backtest).load_data()
    bars = Bars.from_frame(frames[spec.backtest.data.symbols[0]])
    cache = IndicatorCache(bars)
    screen = screen_points(spec, candidate_points(spec), bars=bars, cache=cache, frames=frames, chunk=chunk)
    scored = [p for p, v in zip(screen.points, screen.objective.tolist(), strict=True) if math.isfinite(v)]
    self_check(spec, scored, frames, self_check_points)  # before any score is used
    top = top_points(screen, spec.objective.direction, spec.confirm_top)
    if not top:
        raise SpecError("space", "no screened point has a defined objective; nothing to confirm")

    storage_url = storage_url or default_storage_url(study_name, _data_dir())
    study = _open_study(spec, study_name, storage_url)
    confirmed = confirm_points(
        spec, study, study_name, top, screen, evaluator or InProcessEvaluator(), on_progress=on_progress
    )
    return _report(spec, study, study_name, storage_url, output_dir, screen, confirmed, confirm)


def candidate_points(spec: OptimizationStudySpec) -> list[dict[str, Any]] | None:
    """The feasible grid, or None when the space is continuous or too large (then the sampler proposes)."""
    from kubetrader.optimize.constraints import parse_constraints
    from kubetrader.optimize.space import grid, grid_size, parse_space

    space = parse_space({k: v.model_dump() for k, v in spec.space.items()})
    if any(d.type == "float" and d.step is None for d in space.values()) or grid_size(space) > MAX_GRID_POINTS:
        return None
    constraints = parse_constraints(spec.constraints, list(space))
    return list(grid(space, constraints))


def self_check(spec: OptimizationStudySpec, points: list[dict[str, Any]] | None, frames: Any, count: int) -> None:
    """Run `count` points spread over `points` on both engines; raise ScreeningMismatchError on any difference."""
    from kubetrader.vectorized import check

    if not points or count <= 0:
        return
    step = max(len(points) // count, 1)
    for point in points[step // 2 :: step][:count]:
        outcome = check(trial_spec(spec.backtest, point), frames=frames)
        if not outcome.agrees:
            raise ScreeningMismatchError(
                f"the twin of {spec.backtest.strategy.path} disagrees with Backtrader at {point} on this study's data: "
                + "; ".join(outcome.differences[:5])
                + " (set screen: none to run on Backtrader alone)"
            )


def screen_points(
    spec: OptimizationStudySpec,
    points: list[dict[str, Any]] | None,
    *,
    bars: Any,
    cache: Any,
    frames: Any,
    chunk: int = 512,
) -> Screen:
    """The twin's objective for each point (the grid, or `trials` points from the sampler)."""
    started = time.perf_counter()
    if points is None:
        scored, objective, sharpe = _sampled(spec, bars=bars, cache=cache, frames=frames, chunk=chunk)
        return Screen(scored, objective, sharpe, time.perf_counter() - started, "sampler")
    objective, sharpe = score(spec, points, bars=bars, cache=cache, frames=frames, chunk=chunk)
    return Screen(points, objective, sharpe, time.perf_counter() - started, "grid")


def score(
    spec: OptimizationStudySpec,
    points: list[dict[str, Any]],
    *,
    bars: Any,
    cache: Any,
    frames: Any,
    chunk: int = 512,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(objective, Sharpe ratio) per point from the twin; Sharpe is None when the metric needs trades."""
    from kubetrader.metrics import BATCH_METRICS, compute_metrics_batch
    from kubetrader.vectorized import equity_blocks, run_twin

    metric = spec.objective.metric
    if metric not in BATCH_METRICS:
        values = np.full(len(points), np.nan)
        for i, point in enumerate(points):
            try:
                value = run_twin(trial_spec(spec.backtest, point), frames=frames).metrics.get(metric)
            except ValueError:
                continue
            values[i] = np.nan if value is None else value
        return values, None
    objective = np.full(len(points), np.nan)
    sharpe = np.full(len(points), np.nan)
    at = 0
    for block in equity_blocks(spec.backtest, points, bars=bars, chunk=chunk, cache=cache):
        k = len(block.points)
        if block.valid.any():
            metrics = compute_metrics_batch(block.equity[block.valid], bars.dates)
            objective[at : at + k][block.valid] = metrics[metric]
            sharpe[at : at + k][block.valid] = metrics["sharpe_ratio"]
        at += k
    return objective, sharpe


def _sampled(
    spec: OptimizationStudySpec, *, bars: Any, cache: Any, frames: Any, chunk: int
) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray | None]:
    """`trials` points from the study's sampler in an in-memory study, told the twin's scores in batches."""
    import optuna
    from optuna.trial import TrialState

    from kubetrader.optimize.constraints import feasible, parse_constraints
    from kubetrader.optimize.space import parse_space, to_optuna_distributions

    space = parse_space({k: v.model_dump() for k, v in spec.space.items()})
    constraints = parse_constraints(spec.constraints, list(space))
    distributions = to_optuna_distributions(space)
    study = optuna.create_study(direction=spec.objective.direction, sampler=build_sampler(spec.sampler, space))
    points: list[dict[str, Any]] = []
    objective: list[float] = []
    sharpe: list[float] = []
    batch = max(min(chunk, 64), 1)
    misses = 0
    while len(points) < spec.trials:
        trials: list[Any] = []
        asked: list[dict[str, Any]] = []
        while len(trials) < min(batch, spec.trials - len(points)):
            trial = study.ask(distributions)
            if not feasible(dict(trial.params), constraints):
                study.tell(trial, state=TrialState.FAIL)
                misses += 1
                if misses > 20 * spec.trials + 2000:
                    raise SpecError("constraints", "the sampler keeps proposing infeasible points")
                continue
            trials.append(trial)
            asked.append(dict(trial.params))
        values, sharpes = score(spec, asked, bars=bars, cache=cache, frames=frames, chunk=chunk)
        for trial, value in zip(trials, values.tolist(), strict=True):
            if math.isfinite(value):
                study.tell(trial, value)
            else:
                study.tell(trial, state=TrialState.FAIL)
        points.extend(asked)
        objective.extend(values.tolist())
        if sharpes is not None:
            sharpe.extend(sharpes.tolist())
    return points, np.array(objective), (np.array(sharpe) if sharpe else None)


def top_points(screen: Screen, direction: str, k: int) -> list[tuple[int, dict[str, Any], float]]:
    """(index, point, twin objective) of the best `k` points with a finite objective; ties keep grid order."""
    values = screen.objective
    finite = np.flatnonzero(np.isfinite(values))
    keyed = values[finite] if direction == "minimize" else -values[finite]
    order = finite[np.argsort(keyed, kind="stable")][:k]
    return [(int(i), screen.points[int(i)], float(values[int(i)])) for i in order]


@dataclass(frozen=True)
class Confirmed:
    rank: int
    params: dict[str, Any]
    twin_value: float
    value: float
    trial_number: int
    returns: list[float] | None


def confirm_points(
    spec: OptimizationStudySpec,
    study: Any,
    study_name: str,
    top: list[tuple[int, dict[str, Any], float]],
    screen: Screen,
    evaluator: Evaluator,
    *,
    on_progress: Callable[[StudyProgress], None] | None = None,
    collect_timeout: float = 0.5,
) -> list[Confirmed]:
    """Backtest each top point on Backtrader (through `evaluator`), record it as a trial, compare with the twin."""
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState

    from kubetrader.optimize.space import parse_space, to_optuna_distributions

    metric = spec.objective.metric
    distributions = to_optuna_distributions(parse_space({k: v.model_dump() for k, v in spec.space.items()}))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    known = {_key(t.params): t for t in complete if t.value is not None}
    confirmed: list[Confirmed] = []
    queue = []
    for rank, (_, point, twin_value) in enumerate(top, start=1):
        done = known.get(_key(point))
        if done is not None:  # resumed: this point was confirmed by an earlier run of the study
            confirmed.append(Confirmed(rank, point, twin_value, float(done.value), done.number, None))
            continue
        queue.append((rank, point, twin_value))
    pending: dict[str, tuple[Any, int, dict[str, Any], float]] = {}
    capacity = max(1, evaluator.capacity or spec.parallelism)
    progress = StudyProgress(done=len(confirmed))
    while queue or pending:
        while queue and len(pending) < capacity:
            rank, point, twin_value = queue.pop(0)
            study.enqueue_trial(point, skip_if_exists=False)
            dists = {k: distributions.get(k, CategoricalDistribution([v])) for k, v in point.items()}
            trial = study.ask(dists)
            key = f"{study_name}-t{trial.number}"
            trial.set_user_attr("kubetrader_key", key)
            trial.set_user_attr(ATTR_TWIN, twin_value)
            trial.set_user_attr(ATTR_RANK, rank)
            pending[key] = (trial, rank, point, twin_value)
            evaluator.submit(key, trial_spec(spec.backtest, point))
        for evaluation in evaluator.collect(collect_timeout):
            entry = pending.pop(evaluation.key, None)
            if entry is None:
                continue
            trial, rank, point, twin_value = entry
            value = _tell(study, trial, evaluation, metric)
            if value is None:
                evaluator.cancel()
                raise ScreeningMismatchError(
                    f"Backtrader failed on screened point {point} (twin {metric} {twin_value!r}): {evaluation.error}"
                )
            confirmed.append(Confirmed(rank, point, twin_value, value, trial.number, evaluation.returns))
            progress.done += 1
            progress.running = len(pending)
            best = _best(confirmed, spec.objective.direction)
            progress.best_value, progress.best_params = best.value, dict(best.params)
            if on_progress:
                on_progress(progress)
    mismatches = [c for c in confirmed if not _agree(c.twin_value, c.value)]
    if mismatches:
        detail = "; ".join(f"{c.params}: twin {c.twin_value!r} vs Backtrader {c.value!r}" for c in mismatches[:5])
        raise ScreeningMismatchError(
            f"{len(mismatches)} confirmed point(s) disagree on {metric} beyond {MISMATCH_REL:g} relative: {detail}"
        )
    return sorted(confirmed, key=lambda c: c.rank)


def _tell(study: Any, trial: Any, evaluation: Evaluation, metric: str) -> float | None:
    from optuna.trial import TrialState

    metrics = evaluation.metrics or {}
    for name, v in metrics.items():
        if v is not None:
            trial.set_user_attr(f"m_{name}", v)
    value = metrics.get(metric)
    if value is None or not math.isfinite(value):
        trial.set_user_attr("error", (evaluation.error or f"metric {metric} is undefined")[:500])
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        return None
    study.tell(trial, float(value), skip_if_finished=True)
    return float(value)


def _agree(twin: float, backtrader: float) -> bool:
    return abs(twin - backtrader) <= MISMATCH_REL * max(abs(twin), abs(backtrader)) or abs(twin - backtrader) <= 1e-12


def _best(confirmed: list[Confirmed], direction: str) -> Confirmed:
    pick = min if direction == "minimize" else max
    return pick(confirmed, key=lambda c: c.value)


def _key(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(params), sort_keys=True, default=str)


def _data_dir() -> Path:
    from kubetrader.optimize.service import data_dir

    return data_dir()


def _open_study(spec: OptimizationStudySpec, study_name: str, storage_url: str) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url)
    if not spec.resume:
        existing = {s.study_name for s in optuna.get_all_study_summaries(storage)}
        if study_name in existing:
            raise SpecError("resume", f"study {study_name!r} already exists; set resume or pick a new name")
    return optuna.create_study(
        study_name=study_name, storage=storage, direction=spec.objective.direction, load_if_exists=True
    )


def _report(
    spec: OptimizationStudySpec,
    study: Any,
    study_name: str,
    storage_url: str,
    output_dir: Path,
    screen: Screen,
    confirmed: list[Confirmed],
    confirm: bool,
) -> StudyReport:
    from kubetrader.errors import StrategyError

    best = _best(confirmed, spec.objective.direction)
    studies_dir = output_dir / "studies"
    artifacts = write_study_artifacts(study, studies_dir, study_name, best.params)
    artifacts.update(_write_screen(studies_dir, study_name, spec, screen, confirmed))
    report = StudyReport(
        study_name=study_name,
        storage=storage_url,
        metric=spec.objective.metric,
        direction=spec.objective.direction,
        trials_complete=len(confirmed),
        trials_failed=0,
        trials_infeasible=0,
        best_value=best.value,
        best_params=best.params,
        best_trial=best.trial_number,
        artifacts=artifacts,
    )
    best_returns = best.returns
    if confirm:
        from kubetrader.pipeline import execute

        outcome = execute(trial_spec(spec.backtest, best.params), name=f"{study_name}-best", output_dir=output_dir)
        if outcome.document is None or outcome.paths is None:
            raise StrategyError(f"re-running the best parameters {best.params} failed: {outcome.error}")
        report.confirmed_result = str(outcome.paths.json)
        report.confirmed_metrics = dict(outcome.document.metrics)
        best_returns = list(outcome.document.returns)
    report.deflated_sharpe = _deflated_sharpe(screen, best_returns)
    report.pbo = _pbo(confirmed)
    (studies_dir / f"{study_name}.json").write_text(report.model_dump_json(indent=2))
    return report


def _write_screen(
    out_dir: Path, study_name: str, spec: OptimizationStudySpec, screen: Screen, confirmed: list[Confirmed]
) -> dict[str, str]:
    """`{study}-screen.csv` (every point, the twin's objective) and `{study}-screen.json` (summary)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = sorted({k for p in screen.points for k in p})
    table = out_dir / f"{study_name}-screen.csv"
    with table.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*names, f"twin_{spec.objective.metric}"])
        for point, value in zip(screen.points, screen.objective.tolist(), strict=True):
            writer.writerow([*(point.get(n) for n in names), "" if math.isnan(value) else repr(value)])
    summary = out_dir / f"{study_name}-screen.json"
    summary.write_text(
        json.dumps(
            {
                "twin": spec.backtest.strategy.path,
                "mode": screen.mode,
                "points_screened": len(screen.points),
                "points_undefined": int(np.count_nonzero(~np.isfinite(screen.objective))),
                "screen_seconds": round(screen.seconds, 4),
                "confirmed_on_backtrader": [
                    {"rank": c.rank, "params": c.params, "twin": c.twin_value, "backtrader": c.value} for c in confirmed
                ],
            },
            indent=2,
            default=str,
        )
    )
    return {"screen_table": table.name, "screen_summary": summary.name}


def _deflated_sharpe(screen: Screen, best_returns: list[float] | None) -> float | None:
    """DSR of the best confirmed run, with every screened point's Sharpe ratio as the trial population."""
    from kubetrader.optimize.overfitting import deflated_sharpe_from_returns

    if best_returns is None or screen.sharpe is None:
        return None
    per_period = screen.sharpe[np.isfinite(screen.sharpe)] / math.sqrt(252)
    if per_period.size < 2:
        return None
    value = deflated_sharpe_from_returns(np.asarray(best_returns, dtype=float), per_period)
    return None if math.isnan(value) else value


def _pbo(confirmed: list[Confirmed]) -> float | None:
    """PBO over the confirmed Backtrader runs when there are enough of them with returns of equal length."""
    from kubetrader.optimize.overfitting import probability_of_backtest_overfitting
    from kubetrader.optimize.service import PBO_MIN_TRIALS, PBO_SPLITS

    series = [c.returns for c in confirmed if c.returns]
    if len(series) < PBO_MIN_TRIALS or len({len(r) for r in series}) != 1 or len(series[0]) < 4 * PBO_SPLITS:
        return None
    return probability_of_backtest_overfitting(np.array(series).T, n_splits=PBO_SPLITS).pbo
