"""Screened studies (`screen: vectorized`): the twin scores every point, Backtrader confirms the best.

Why: a grid of thousands of points costs minutes to hours in Backtrader and about a
second with a strategy's exact vectorized twin (kubetrader.vectorized). The twin is
only a filter; Backtrader stays the engine of record. The steps, exactly:

1. The template must be screenable (`vectorized.not_screenable`); otherwise the
   study runs on Backtrader alone, as with `screen: none`, and says why in the log.
2. Points: the whole feasible grid when every parameter is discrete (ints,
   categoricals, floats with a step) and the grid has at most `MAX_GRID_POINTS`
   points; otherwise `trials` feasible points from the study's sampler (TPE, random,
   ...) in an in-memory Optuna study whose objective is the twin. An infeasible proposal
   is told as the study driver tells it (`study.tell_if_infeasible`: a constraint
   violation TPE learns from), so a constrained study reaches its count.
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
   Without an evaluator of the caller's, the self-check and the confirmations run on
   a local pool of forked processes (one per core, forked before anything else runs,
   so a worker starts in milliseconds): the twin's rank 1 is confirmed by the full
   pipeline run (result files written), which is then the study's confirmed result
   when Backtrader agrees that it is the best (it does unless two points tie); a
   self-check run of a top point counts as its confirmation (no second run).
6. The report's best value, params and confirmed result come from those Backtrader
   runs only. The twin's scores go to `{study}-screen.csv` and a summary to
   `{study}-screen.json`. The deflated Sharpe ratio counts every screened point as
   a trial (the twin's Sharpe ratios are the trial population).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kubetrader.errors import FatalError, SpecError
from kubetrader.optimize.evaluation import Evaluation, Evaluator, InProcessEvaluator
from kubetrader.optimize.report import StudyReport, write_study_artifacts
from kubetrader.optimize.study import (
    ATTR_METRICS,
    MAX_INFEASIBLE_STREAK,
    StudyProgress,
    build_sampler,
    default_storage_url,
    open_storage,
    tell_if_infeasible,
    trial_key,
    trial_spec,
)
from kubetrader.specs.backtest import BacktestSpec
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
    workers: int | None = None,
    namespace: str | None = None,
    uid: str | None = None,
) -> StudyReport:
    """Screen with the twin, confirm the top `spec.confirm_top` on Backtrader, report Backtrader's results.

    `workers`: size of the local process pool used when `evaluator` is None (default: the
    usable cores, at most the number of Backtrader runs).
    """
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
            namespace=namespace,
            uid=uid,
        )
    from kubetrader.optimize.naming import study_key
    from kubetrader.runner import BacktestRunner
    from kubetrader.vectorized import Bars, IndicatorCache

    study_name = study_key(name, study_name=spec.study_name, namespace=namespace, uid=uid)
    with contextlib.ExitStack() as stack:
        pool = None
        if evaluator is None:  # fork the workers first: before numba's and the warm-up thread's start
            runs = spec.confirm_top + max(self_check_points, 0)
            pool = stack.enter_context(_local_pool(workers or min(usable_cores(), max(runs, 1))))
        frames = BacktestRunner(spec.backtest).load_data()
        bars = Bars.from_frame(frames[spec.backtest.data.symbols[0]])
        cache = IndicatorCache(bars)
        screen = screen_points(spec, candidate_points(spec), bars=bars, cache=cache, frames=frames, chunk=chunk)
        scored = [p for p, v in zip(screen.points, screen.objective.tolist(), strict=True) if math.isfinite(v)]
        _warm_up_charts()  # the charts page's imports, on a thread, while this one waits for Backtrader
        checked = self_check(spec, scored, frames, self_check_points, pool=pool)  # before any score is used
        top = top_points(screen, spec.objective.direction, spec.confirm_top)
        if not top:
            raise SpecError("space", "no screened point has a defined objective; nothing to confirm")

        storage_url = storage_url or default_storage_url(study_name, _data_dir())
        study = _open_study(spec, study_name, storage_url)
        confirmed = confirm_points(
            spec,
            study,
            study_name,
            top,
            screen,
            evaluator or (PoolEvaluator(pool) if pool is not None else InProcessEvaluator()),
            on_progress=on_progress,
            prior=checked,
            pipeline=(f"{study_name}-best", output_dir) if confirm else None,
        )
        return _report(spec, study, study_name, storage_url, output_dir, screen, confirmed, confirm, pool=pool)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


@contextlib.contextmanager
def _local_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """`workers` processes forked now (milliseconds each: they inherit every import); spawned where
    fork is unavailable or unsafe (other threads alive). Cancelled and joined on the way out."""
    methods = multiprocessing.get_all_start_methods()
    method = "fork" if "fork" in methods and threading.active_count() == 1 else methods[0]
    pool = ProcessPoolExecutor(max(workers, 1), mp_context=multiprocessing.get_context(method))
    try:
        for future in [pool.submit(_worker_warm_up) for _ in range(max(workers, 1))]:
            future.add_done_callback(lambda _: None)  # forks every worker at once; results unused
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _worker_warm_up() -> None:
    """Imports a worker's first pipeline run needs (the tearsheet's plotting), off the critical path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    import kubetrader.pipeline  # noqa: F401


def _warm_up_charts() -> None:
    """Import the charts page's modules (Optuna's visualization, fANOVA importances: about a second
    and a half) on a daemon thread; `write_study_artifacts` later finds them loaded."""

    def load() -> None:
        with contextlib.suppress(ImportError):
            import optuna.importance
            import optuna.visualization  # noqa: F401

    threading.Thread(target=load, name="screening-warm-up", daemon=True).start()


def _backtrader_run(spec: BacktestSpec) -> tuple[Any, Any, dict[str, float | None]]:
    """Backtrader's equity, trades and metrics for `spec` (in a pool worker)."""
    from kubetrader.runner import BacktestRunner

    result = BacktestRunner(spec).run()
    return result.equity, result.trades, dict(result.metrics)


def _trial_run(key: str, spec: BacktestSpec) -> Evaluation:
    """One confirmation in a pool worker, with `InProcessEvaluator`'s semantics (errors become evaluations)."""
    evaluator = InProcessEvaluator()
    evaluator.submit(key, spec)
    return evaluator.collect(0.0)[0]


def _pipeline_run(key: str, spec: BacktestSpec, name: str, output_dir: Path) -> tuple[Evaluation, Any]:
    """A confirmation through the full pipeline (result files written), in a pool worker."""
    from kubetrader.pipeline import execute

    try:
        outcome = execute(spec, name=name, output_dir=output_dir)
    except Exception as exc:  # a strategy bug fails the confirmation, as in `InProcessEvaluator`
        return Evaluation(key=key, metrics=None, error=f"{type(exc).__name__}: {exc}"), None
    if outcome.document is None:
        return Evaluation(key=key, metrics=None, error=outcome.error or outcome.status), outcome
    document = outcome.document
    return Evaluation(key=key, metrics=dict(document.metrics), returns=list(document.returns)), outcome


@dataclass
class PoolEvaluator:
    """The `Evaluator` of a local process pool; `submit_pipeline` confirms through the full pipeline."""

    pool: ProcessPoolExecutor
    capacity: int = 0
    outcomes: dict[str, Any] = field(default_factory=dict)
    _futures: dict[Future[Any], str] = field(default_factory=dict)
    _done: dict[str, Evaluation] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.capacity = self.capacity or self.pool._max_workers  # type: ignore[attr-defined]

    def submit(self, key: str, spec: BacktestSpec) -> None:
        self._futures[self.pool.submit(_trial_run, key, spec)] = key

    def submit_pipeline(self, key: str, spec: BacktestSpec, name: str, output_dir: Path) -> None:
        self._futures[self.pool.submit(_pipeline_run, key, spec, name, output_dir)] = key

    def collect(self, timeout: float) -> list[Evaluation]:
        done, _ = wait(list(self._futures), timeout=timeout, return_when=FIRST_COMPLETED)
        found = []
        for future in done:
            key = self._futures.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # the worker died (BrokenProcessPool) or could not pickle the result
                evaluation = Evaluation(key=key, metrics=None, error=f"{type(exc).__name__}: {exc}")
            else:
                if isinstance(result, tuple):
                    evaluation, self.outcomes[key] = result
                else:
                    evaluation = result
            self._done[key] = evaluation
            found.append(evaluation)
        return found

    def lookup(self, key: str) -> Evaluation | None:
        return self._done.get(key)

    def in_flight(self, key: str) -> bool:
        return key in self._futures.values()

    def cancel(self) -> None:
        for future in self._futures:
            future.cancel()
        self._futures.clear()


def candidate_points(spec: OptimizationStudySpec) -> list[dict[str, Any]] | None:
    """The feasible grid, or None when the space is continuous or too large (then the sampler proposes)."""
    from kubetrader.optimize.constraints import parse_constraints
    from kubetrader.optimize.space import grid, grid_size, parse_space

    space = parse_space({k: v.model_dump() for k, v in spec.space.items()})
    size = grid_size(space)  # None: a float without a step
    if size is None or size > MAX_GRID_POINTS:
        return None
    constraints = parse_constraints(spec.constraints, space)
    return list(grid(space, constraints))


def self_check(
    spec: OptimizationStudySpec,
    points: list[dict[str, Any]] | None,
    frames: Any,
    count: int,
    *,
    pool: ProcessPoolExecutor | None = None,
) -> dict[str, Evaluation]:
    """Run `count` points spread over `points` on both engines; raise ScreeningMismatchError on any difference.

    Backtrader's runs go to `pool` when given (all at once), the twin's run here. Returns
    Backtrader's metrics and returns per point (by `_key`): a confirmation of the same point reuses them.
    """
    from kubetrader.vectorized.equivalence import check_run

    if not points or count <= 0:
        return {}
    step = max(len(points) // count, 1)
    chosen = points[step // 2 :: step][:count]
    specs = [trial_spec(spec.backtest, point) for point in chosen]
    if pool is not None:
        futures = [pool.submit(_backtrader_run, s) for s in specs]
        runs = [f.result() for f in futures]
    else:
        runs = [_backtrader_run(s) for s in specs]
    checked: dict[str, Evaluation] = {}
    for point, backtest, (equity, trades, metrics) in zip(chosen, specs, runs, strict=True):
        outcome = check_run(backtest, equity, trades, metrics, frames=frames)
        if not outcome.agrees:
            raise ScreeningMismatchError(
                f"the twin of {spec.backtest.strategy.path} disagrees with Backtrader at {point} on this study's data: "
                + "; ".join(outcome.differences[:5])
                + " (set screen: none to run on Backtrader alone)"
            )
        returns = [float(x) for x in equity.pct_change().fillna(0.0).to_numpy()]  # as `run_trial_backtest`
        checked[_key(point)] = Evaluation(key="", metrics=metrics, returns=returns)
    return checked


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

    from kubetrader.optimize.constraints import parse_constraints
    from kubetrader.optimize.space import parse_space, to_optuna_distributions

    space = parse_space({k: v.model_dump() for k, v in spec.space.items()})
    constraints = parse_constraints(spec.constraints, space)
    distributions = to_optuna_distributions(space)
    study = optuna.create_study(direction=spec.objective.direction, sampler=build_sampler(spec.sampler, space, None))
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
            if tell_if_infeasible(study, trial, constraints):  # as the study driver does: TPE learns from it
                misses += 1
                if misses > MAX_INFEASIBLE_STREAK:
                    raise SpecError("constraints", f"{MAX_INFEASIBLE_STREAK} infeasible proposals in a row")
                continue
            misses = 0
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
    outcome: Any = None  # the pipeline's ExecutionOutcome when this confirmation wrote the result files


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
    prior: Mapping[str, Evaluation] | None = None,
    pipeline: tuple[str, Path] | None = None,
) -> list[Confirmed]:
    """Backtest each top point on Backtrader (through `evaluator`), record it as a trial, compare with the twin.

    `prior`: Backtrader runs already made (the self-check's), recorded without running again.
    `pipeline` (result name, output dir): with a `PoolEvaluator`, rank 1 is confirmed by the full
    pipeline run, whose outcome the report then uses when that point is the best.
    """
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
    prior = prior or {}
    queue.sort(key=lambda entry: _key(entry[1]) not in prior)  # the runs already made first: no wait
    pending: dict[str, tuple[Any, int, dict[str, Any], float]] = {}
    capacity = max(1, evaluator.capacity or spec.parallelism)
    progress = StudyProgress(done=len(confirmed))
    ready: list[Evaluation] = []
    while queue or pending:
        while queue and (len(pending) < capacity or _key(queue[0][1]) in prior):
            rank, point, twin_value = queue.pop(0)
            # One journal append per write (each with an fsync): the attributes travel with the enqueue.
            study.enqueue_trial(point, user_attrs={ATTR_TWIN: twin_value, ATTR_RANK: rank}, skip_if_exists=False)
            dists = {k: distributions.get(k, CategoricalDistribution([v])) for k, v in point.items()}
            trial = study.ask(dists)
            key = trial_key(study_name, trial.number)
            trial.set_user_attr("kubetrader_key", key)
            pending[key] = (trial, rank, point, twin_value)
            earlier = prior.get(_key(point))
            if earlier is not None:  # the self-check ran this very spec on Backtrader
                ready.append(Evaluation(key=key, metrics=earlier.metrics, returns=earlier.returns))
            elif rank == 1 and pipeline is not None and isinstance(evaluator, PoolEvaluator):
                evaluator.submit_pipeline(key, trial_spec(spec.backtest, point), *pipeline)
            else:
                evaluator.submit(key, trial_spec(spec.backtest, point))
        fresh, ready = ready + evaluator.collect(0.0 if ready else collect_timeout), []
        for evaluation in fresh:
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
            outcome = evaluator.outcomes.get(evaluation.key) if isinstance(evaluator, PoolEvaluator) else None
            confirmed.append(Confirmed(rank, point, twin_value, value, trial.number, evaluation.returns, outcome))
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
    # One attribute for all metrics, as the study driver records them (each write is an fsync'd append).
    trial.set_user_attr(ATTR_METRICS, {k: v for k, v in metrics.items() if v is not None})
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
    *,
    pool: ProcessPoolExecutor | None = None,
) -> StudyReport:
    from kubetrader.errors import StrategyError

    best = _best(confirmed, spec.objective.direction)
    best_spec, best_name = trial_spec(spec.backtest, best.params), f"{study_name}-best"
    rerun: Future[Any] | None = None
    if confirm and best.outcome is None and pool is not None:  # re-run on the pool while the charts are drawn
        rerun = pool.submit(_pipeline_run, "best", best_spec, best_name, output_dir)
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
        from kubetrader.results.store import remove_stale

        for other in confirmed:  # a pipeline run of a point that is not the best (a tie): not a result
            if other is not best and other.outcome is not None and other.outcome.paths is not None:
                remove_stale(other.outcome.paths)
        if best.outcome is not None:
            outcome = best.outcome
        elif rerun is not None:
            evaluation, outcome = rerun.result()
            if outcome is None:
                raise StrategyError(f"re-running the best parameters {best.params} failed: {evaluation.error}")
        else:
            outcome = execute(best_spec, name=best_name, output_dir=output_dir)
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
