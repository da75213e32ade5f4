"""The study driver: Optuna asks, the evaluator backtests, Optuna is told.

Why ask/tell instead of `study.optimize`: trials run elsewhere (the worker pool),
so the driver keeps up to `parallelism` trials in flight and tells Optuna each
result as it arrives; TPE's constant liar keeps parallel proposals apart.

Reproducibility. Told as they arrive, the trials a sampler sees at each ask depend
on which worker finished first, so a seed alone does not fix the study. With a
seed the driver works in batches of `sampler.batchSize`: it asks the whole batch,
runs it with up to `parallelism` trials at once, and tells the results in trial
order once all are back. Each ask then sees the same history whatever the
parallelism or the timing, so the same seed gives the same trials and best point.
Without a seed results are told as they arrive (no worker waits for a straggler).

Handing out trials fast. Every free slot is filled in one round of asks and every result that
arrived is told in one round, and each round's storage writes are one journal append
(kubetrader.optimize.journal; a round of asks lasts at most ASK_GROUP_SECONDS, so a slow sampler
still feeds the first workers at once). The driver's own cost is then what Optuna's sampler costs
per ask (bench/bench_queue_scale.py: trials/s per sampler and study size). TPE reads each finished
trial once (kubetrader.optimize.samplers.MemoizedTPESampler, the same proposals as Optuna's) and the
journal keeps its finished trials filtered (kubetrader.optimize.journal), so an ask no longer walks
every past trial in Python. Each group of asks is announced to TPE (`expect_asks`): the asks of a
round share one split and fit, and without the constant liar their candidates are scored in one call.

Crash safety. Optuna's heartbeat only covers `optimize`, not ask/tell, so the driver
recovers by itself: on start it looks at every trial left RUNNING by a previous
driver. If the queue has its result, it is told; if its task is still in flight,
the driver adopts it and waits for its result; otherwise (the driver died inside
`ask` or before submitting) the ask is finished and the trial run. No finished
trial is lost, none is failed by a crash, and none stays RUNNING forever. The journal's lock is forced
after a few seconds untouched (a killed driver's lock), not Optuna's 30.

Infeasible points (a constraint fails) are never backtested and do not count toward
the trial budget. They are told COMPLETE with a constraint violation
(`Trial.set_constraint`, Optuna's own constraint handling since 5.0, which replaced
`constraints_func`) and the user attribute `infeasible`: TPE then puts them among the
bad trials and moves away from them (optuna/samplers/_tpe/sampler.py `_split_trials`),
and `Study.best_trial` skips them. Told FAIL, as before, TPE ignored them and proposed
the same infeasible points again until the study gave up. Their value (0.0) means
nothing; every count, report and statistic leaves them out (`is_infeasible`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetrader import defaults
from kubetrader.errors import SpecError
from kubetrader.optimize.constraints import Constraint, feasible, parse_constraints
from kubetrader.optimize.evaluation import Evaluation, Evaluator
from kubetrader.optimize.finished_lead import lead_holds
from kubetrader.optimize.space import Space, grid, grid_size, param_values, parse_space, to_optuna_distributions
from kubetrader.specs.backtest import BacktestSpec, StrategySpec
from kubetrader.specs.limits import MAX_GRID_POINTS
from kubetrader.specs.study import OptimizationStudySpec, SamplerSpec

log = logging.getLogger(__name__)

MAX_INFEASIBLE_STREAK = 2000
JOURNAL_LOCK_GRACE_SECONDS = 3  # Optuna warns below 3
ASK_GROUP_SECONDS = 0.25  # one group of asks (one journal append, lock held): well under the lock's grace
ATTR_METRICS = "metrics"
ATTR_RETRY_OF = "retry_of"
ATTR_RESUMED = "resumed_after_crash"


ATTR_INFEASIBLE = "infeasible"
INFEASIBLE_VALUE = 0.0


def is_infeasible(trial: Any) -> bool:
    """An infeasible point (told COMPLETE with a violated constraint, or FAIL by older drivers)."""
    return bool(trial.user_attrs.get(ATTR_INFEASIBLE))


def tell_if_infeasible(study: Any, trial: Any, constraints: list[Constraint]) -> bool:
    """Tell an asked trial that breaks a constraint as infeasible (see the module docstring) and
    say so (True); leave a feasible one alone (False). The one path for every study that asks
    Optuna for points: the driver's and the screened study's sampler (kubetrader.optimize.screening)."""
    from optuna.trial import TrialState

    params = dict(trial.params)
    if feasible(params, constraints):
        return False
    trial.set_user_attr(ATTR_INFEASIBLE, True)
    for number, constraint in enumerate(constraints):
        trial.set_constraint(f"c{number}", 0.0 if feasible(params, [constraint]) else 1.0)
    study.tell(trial, INFEASIBLE_VALUE, state=TrialState.COMPLETE)
    return True


def trial_key(study_name: str, number: int) -> str:
    """The evaluator's key of a trial: derived, not stored, so a restarted driver finds it."""
    return f"{study_name}-t{number}"


@dataclass
class StudyProgress:
    done: int = 0
    failed: int = 0
    running: int = 0
    infeasible: int = 0
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)


@dataclass
class StudySummary:
    study_name: str
    storage: str
    direction: str
    metric: str
    trials_complete: int
    trials_failed: int
    trials_infeasible: int
    best_value: float | None
    best_params: dict[str, Any]
    best_trial: int | None
    trial_values: list[float]
    best_returns: list[float] | None


def default_storage_url(study_name: str, data_dir: Path) -> str:
    """A journal file per study: safe with several processes, unlike SQLite (kubetrader.defaults)."""
    return defaults.journal_url(study_name, data_dir)


def open_storage(url: str) -> Any:
    """Optuna storage from a URL: `journal://PATH` for Optuna's journal file, else an RDB URL
    (PostgreSQL in a cluster)."""
    import optuna

    if url.startswith("journal://"):
        from optuna.storages.journal import JournalFileSymlinkLock

        from kubetrader.optimize.journal import GroupCommitBackend, GroupedJournalStorage

        path = Path(url.removeprefix("journal://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        # A journal write takes milliseconds, so a lock untouched for a few seconds was left
        # by a killed driver: Optuna's default grace of 30 s stalled every restart that long.
        lock = JournalFileSymlinkLock(str(path), grace_period=JOURNAL_LOCK_GRACE_SECONDS)
        return GroupedJournalStorage(GroupCommitBackend(str(path), lock))
    return optuna.storages.RDBStorage(url, heartbeat_interval=None)


def build_sampler(spec: SamplerSpec, space: Space, storage_url: str | None) -> Any:
    """The sampler of `spec`; `storage_url` None for a study in this process's memory only."""
    import optuna

    if spec.type == "tpe":
        from kubetrader.optimize.samplers import MemoizedTPESampler, vectorized_tpe_log_ndtr

        vectorized_tpe_log_ndtr()
        return MemoizedTPESampler(
            seed=spec.seed,
            n_startup_trials=spec.startup_trials,
            multivariate=spec.multivariate,
            constant_liar=spec.constant_liar,
        )
    if spec.type == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    if spec.type == "cmaes":
        from kubetrader.optimize.samplers import cmaes_sampler

        return cmaes_sampler(seed=spec.seed, startup_trials=spec.startup_trials, storage_url=storage_url)
    from kubetrader.optimize.samplers import grid_sampler

    return grid_sampler({name: param_values(d) for name, d in space.items()}, spec.seed)


def trial_spec(template: BacktestSpec, params: dict[str, Any]) -> BacktestSpec:
    """The template with the trial's parameters merged over its strategy params."""
    merged = {**template.strategy.params, **params}
    return template.model_copy(update={"strategy": StrategySpec(path=template.strategy.path, params=merged)})


def check_feasible_space(space: Space, constraints: list[Constraint]) -> None:
    """Fail early when the constraints exclude every point (checked exhaustively on
    grids up to a million points, by sampling otherwise)."""
    if not constraints:
        return
    size = grid_size(space)  # counted, not listed: a space's size is bounded per parameter only
    if size is not None and size <= MAX_GRID_POINTS:
        if next(grid(space, constraints), None) is None:
            raise SpecError("constraints", "the constraints exclude every point of the space")
        return
    import random

    rng = random.Random(0)
    for _ in range(20_000):
        point = {}
        for name, d in space.items():
            if d.type == "categorical":
                point[name] = rng.choice(d.choices)
            elif d.type == "int":
                point[name] = rng.randrange(d.low, d.high + 1, d.step)
            else:
                point[name] = rng.uniform(d.low, d.high)
        if feasible(point, constraints):
            return
    raise SpecError("constraints", "no feasible point found in 20000 random samples of the space")


def feasible_trials(study: Any) -> list[Any]:
    """The COMPLETE trials that are real evaluations (not infeasible points), in trial order."""
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if not is_infeasible(t)]


@dataclass
class _Tally:
    """Trials counted by state, and Optuna's best trial among them: `Study.best_trial` is the first
    COMPLETE trial of the best value, or if it breaks a constraint, the first of the best value
    among those that break none (`_get_best_trial`, optuna/study/study.py), which is the first
    best among the feasible ones either way."""

    done: int = 0
    failed: int = 0
    running: int = 0
    infeasible: int = 0
    best: Any = None

    def add(self, trial: Any, maximize: bool) -> None:
        from optuna.trial import TrialState

        state = trial.state
        if is_infeasible(trial):
            self.infeasible += 1
        elif state == TrialState.COMPLETE:
            self.done += 1
        elif state == TrialState.FAIL:
            self.failed += 1
        elif state == TrialState.RUNNING:
            self.running += 1
        feasible = state == TrialState.COMPLETE and all(x <= 0.0 for x in trial.constraints.values())
        if feasible and (self.best is None or _better(trial.value, self.best.value, maximize)):
            self.best = trial

    def merged(self, later: _Tally, maximize: bool) -> _Tally:
        best = self.best
        if later.best is not None and (best is None or _better(later.best.value, best.value, maximize)):
            best = later.best
        return _Tally(
            self.done + later.done,
            self.failed + later.failed,
            self.running + later.running,
            self.infeasible + later.infeasible,
            best,
        )


def _better(value: float, than: float, maximize: bool) -> bool:
    return value > than if maximize else value < than


@dataclass
class _ProgressLead:
    """The study's leading run of finished trials, tallied: a finished trial never changes and a
    study's trials are only appended, so they are counted once (a list whose last counted trial is
    another object is counted afresh)."""

    study: Any
    count: int = 0
    last: Any = None
    tally: _Tally = field(default_factory=_Tally)

    def matches(self, trials: list[Any]) -> bool:
        return lead_holds(trials, self.count, self.last)

    def extend(self, trials: list[Any], maximize: bool) -> None:
        while self.count < len(trials) and trials[self.count].state.is_finished():
            self.tally.add(trials[self.count], maximize)
            self.last = trials[self.count]
            self.count += 1


class StudyDriver:
    """Runs one OptimizationStudy to its trial budget (resuming a previous run)."""

    def __init__(
        self,
        spec: OptimizationStudySpec,
        *,
        study_name: str,
        storage_url: str,
        evaluator: Evaluator,
        on_progress: Callable[[StudyProgress], None] | None = None,
        collect_timeout: float = 0.5,
        returns_dir: Path | None = None,
    ) -> None:
        self.spec = spec
        self.study_name = study_name
        self.storage_url = storage_url
        self.evaluator = evaluator
        self.on_progress = on_progress
        self.collect_timeout = collect_timeout
        self.returns_dir = returns_dir
        self.space = parse_space({k: v.model_dump() for k, v in spec.space.items()})
        self.constraints = parse_constraints(spec.constraints, self.space)
        check_feasible_space(self.space, self.constraints)
        self._returns: dict[int, list[float]] = {}
        self._infeasible_streak = 0
        self._held: list[tuple[Any, dict[str, Any]]] = []  # asked, in the batch, not yet submitted
        self.storage: Any = None  # the Optuna storage, once `run` opened it
        self._progress_lead: _ProgressLead | None = None

    def _open(self) -> Any:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = build_sampler(self.spec.sampler, self.space, self.storage_url)  # refusals before any storage I/O
        storage = self.storage = open_storage(self.storage_url)
        if not self.spec.resume:
            existing = {s.study_name for s in optuna.get_all_study_summaries(storage)}
            if self.study_name in existing:
                raise SpecError("resume", f"study {self.study_name!r} already exists; set resume or pick a new name")
        return optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            sampler=sampler,
            direction=self.spec.objective.direction,
            load_if_exists=True,
        )

    def run(self) -> StudySummary:
        from kubetrader.optimize.journal import write_group

        study = self._open()
        distributions = to_optuna_distributions(self.space)
        pending: dict[str, Any] = {}  # key -> trial, submitted and not yet told
        arrived: dict[str, Evaluation] = {}  # seeded studies: results held until their batch is whole
        self._recover(study, pending, distributions)
        progress = self._progress(study)
        self._infeasible_streak = 0
        batched = self.spec.sampler.seed is not None
        room = min(self.spec.parallelism, self.evaluator.capacity or self.spec.parallelism)
        while True:
            finished = progress.done + progress.failed
            if batched:
                if not pending:  # a batch boundary: the next batch depends only on what was told so far
                    self._ask(
                        study, distributions, pending, self.spec.sampler.batch_size, finished, hold=True, room=room
                    )
                self._submit_held(pending, room - (len(pending) - len(arrived) - len(self._held)))
            else:
                self._ask(study, distributions, pending, room - len(pending), finished)
            if not pending:
                break
            evaluations = self.evaluator.collect(self.collect_timeout)
            with write_group(self.storage):  # every tell of this round in one journal append
                for evaluation in evaluations:
                    if evaluation.key not in pending or evaluation.key in arrived:
                        continue  # a late duplicate of a trial already told
                    if batched:
                        arrived[evaluation.key] = evaluation
                    else:
                        self._tell(study, pending.pop(evaluation.key), evaluation)
                if batched and len(arrived) == len(pending):
                    # Told in trial order, whichever worker finished first.
                    for key in sorted(pending, key=lambda k: pending[k].number):
                        self._tell(study, pending[key], arrived[key])
                    pending.clear()
                    arrived.clear()
            progress = self._progress(study)
            progress.running = len(pending) - len(arrived) - len(self._held)
            if self.on_progress:
                self.on_progress(progress)
        return self._summary(study)

    def _ask(
        self,
        study: Any,
        distributions: dict[str, Any],
        pending: dict[str, Any],
        count: int,
        finished: int,
        *,
        hold: bool = False,
        room: int = 0,
    ) -> None:
        """Ask up to `count` feasible trials within the budget (infeasible ones are told at once) and
        submit them, or with `hold` keep them for `_submit_held` (a batch larger than the parallelism)
        and submit up to `room` of them as they come.

        Asked in groups (`_ask_group`): each group's journal writes are one append, and its trials
        are submitted once that append is done, so a restarted driver never finds a task whose
        trial the journal does not hold. A seeded batch's first trials run while the rest are asked:
        what the batch holds does not depend on when its trials are submitted, only on what was
        told before it."""
        wanted = min(count, self.spec.trials - finished - len(pending))
        started = 0
        while started < wanted:
            asked, exhausted = self._ask_group(study, distributions, wanted - started)
            for trial, params in asked:
                self._take(trial, params, pending, hold=hold)
            if hold and room:
                self._submit_held(pending, room - (len(pending) - len(self._held)))
            started += len(asked)
            if exhausted:
                return

    def _ask_group(
        self, study: Any, distributions: dict[str, Any], count: int
    ) -> tuple[list[tuple[Any, dict[str, Any]]], bool]:
        """Up to `count` feasible asked trials with their params, and whether the sampler ran out.

        All of one group's asks (and the infeasible points told among them) are one journal append
        (kubetrader.optimize.journal), and a group lasts at most ASK_GROUP_SECONDS, so when each ask
        is slow (TPE over thousands of trials) the first trials reach the workers without waiting
        for the last. Several asks before any tell is Optuna's batch optimization with the
        ask-and-tell interface; TPE's constant liar (on by default, SamplerSpec.constant_liar)
        counts the running trials among the bad ones so the batch does not crowd one spot
        ("penalize running trials to avoid suggesting parameter configurations nearby",
        https://optuna.readthedocs.io/en/latest/reference/samplers/generated/optuna.samplers.TPESampler.html;
        batch asks: https://optuna.readthedocs.io/en/v3.6.2/tutorial/20_recipes/009_ask_and_tell.html).
        """
        sampler = study.sampler
        asked: list[tuple[Any, dict[str, Any]]] = []
        from kubetrader.optimize.journal import write_group

        deadline = time.monotonic() + ASK_GROUP_SECONDS
        if hasattr(sampler, "expect_asks"):  # TPE plans the round's proposals together (MemoizedTPESampler)
            sampler.expect_asks(count)
        with write_group(self.storage):
            while len(asked) < count:
                if hasattr(sampler, "is_exhausted") and sampler.is_exhausted(study):
                    return asked, True
                trial = study.ask(distributions)
                params = dict(trial.params)
                if tell_if_infeasible(study, trial, self.constraints):
                    self._infeasible_streak += 1
                    if self._infeasible_streak > MAX_INFEASIBLE_STREAK:
                        raise SpecError("constraints", f"{MAX_INFEASIBLE_STREAK} infeasible proposals in a row")
                else:
                    self._infeasible_streak = 0
                    asked.append((trial, params))
                if time.monotonic() >= deadline:
                    break
        return asked, False

    def _start(self, study: Any, trial: Any, pending: dict[str, Any], *, hold: bool = False) -> bool:
        """Submit an asked trial (or hold it); an infeasible point is told as one instead (False)."""
        params = dict(trial.params)
        if tell_if_infeasible(study, trial, self.constraints):
            return False
        self._take(trial, params, pending, hold=hold)
        return True

    def _take(self, trial: Any, params: dict[str, Any], pending: dict[str, Any], *, hold: bool) -> None:
        if hold:
            pending[trial_key(self.study_name, trial.number)] = trial
            self._held.append((trial, params))
        else:
            self._submit(trial, params, pending)

    def _submit_held(self, pending: dict[str, Any], room: int) -> None:
        while self._held and room > 0:
            trial, params = self._held.pop(0)
            self._submit(trial, params, pending)
            room -= 1

    def returns_by_trial(self) -> dict[int, list[float]]:
        """Daily returns of the trials (for PBO and the effective number of trials): those this
        driver evaluated, and with `returns_dir` those earlier drivers kept there (a resumed
        study keeps its PBO)."""
        found: dict[int, list[float]] = {}
        if self.returns_dir is not None and self.returns_dir.is_dir():
            import numpy as np

            for path in self.returns_dir.glob("*.npy"):
                if path.stem.isdigit():
                    found[int(path.stem)] = [float(x) for x in np.load(path)]
        found.update(self._returns)
        return found

    def _submit(self, trial: Any, params: dict[str, Any], pending: dict[str, Any]) -> None:
        key = trial_key(self.study_name, trial.number)
        pending[key] = trial
        self.evaluator.submit(key, trial_spec(self.spec.backtest, params))

    def _tell(self, study: Any, trial: Any, evaluation: Evaluation) -> None:
        """Record a finished evaluation on a RUNNING trial (an `optuna.trial.Trial`)."""
        from optuna.trial import TrialState

        metric = self.spec.objective.metric
        metrics = evaluation.metrics or {}
        # One attribute for all metrics: each storage write is a journal append + fsync.
        trial.set_user_attr(ATTR_METRICS, {k: v for k, v in metrics.items() if v is not None})
        value = metrics.get(metric)
        if value is None or not math.isfinite(value):
            trial.set_user_attr("error", (evaluation.error or f"metric {metric} is undefined for this trial")[:500])
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            if evaluation.retryable:
                self._retry_once(study, trial.number)
            return
        if evaluation.returns is not None:
            self._returns[trial.number] = evaluation.returns
            self._keep_returns(trial.number, evaluation.returns)
        study.tell(trial, float(value), skip_if_finished=True)

    def _keep_returns(self, number: int, returns: list[float]) -> None:
        if self.returns_dir is None:
            return
        import numpy as np

        self.returns_dir.mkdir(parents=True, exist_ok=True)
        partial = self.returns_dir / f".{number}.tmp.npy"
        np.save(partial, np.asarray(returns, dtype=np.float64))
        partial.replace(self.returns_dir / f"{number}.npy")  # atomic: never half a file

    def _retry_once(self, study: Any, number: int) -> None:
        trial = study.trials[number]
        if ATTR_RETRY_OF in trial.user_attrs:
            return
        study.enqueue_trial(dict(trial.params), user_attrs={ATTR_RETRY_OF: number}, skip_if_exists=False)

    def _recover(self, study: Any, pending: dict[str, Any], distributions: dict[str, Any]) -> None:
        """Tell, adopt or run the trials a previous driver left RUNNING."""
        from optuna.trial import Trial, TrialState

        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            trial = Trial(study, frozen._trial_id)
            key = trial_key(self.study_name, frozen.number)
            evaluation = self.evaluator.lookup(key)
            if evaluation is not None:
                self._tell(study, trial, evaluation)
            elif self.evaluator.in_flight(key):
                pending[key] = trial  # adopted: its result arrives later
            else:
                # Never reached the queue: the driver died inside `ask` (its params may be
                # partial) or before it submitted. Finish the ask the way `Study.ask` does
                # (`Trial._suggest` keeps the params already stored and samples the rest),
                # then run it: a crash costs no trial and leaves none FAIL.
                log.warning("trial %s was left RUNNING with no task: finishing its ask and running it", frozen.number)
                for name, distribution in distributions.items():
                    trial._suggest(name, distribution)
                trial.set_user_attr(ATTR_RESUMED, True)
                self._start(study, trial, pending)

    def _progress(self, study: Any) -> StudyProgress:
        """Counts by state and the best trial (Optuna's `best_trial`): the leading finished trials
        tallied once (`_ProgressLead`), the rest afresh. Called after every round of results, it
        scanned every trial of the study: a fifth of the driver's own time per trial at 5,000."""
        trials = study.get_trials(deepcopy=False)
        lead = self._progress_lead
        if lead is None or lead.study is not study or not lead.matches(trials):
            lead = self._progress_lead = _ProgressLead(study)
        maximize = study.direction.name == "MAXIMIZE"
        lead.extend(trials, maximize)
        tail = _Tally()
        for t in trials[lead.count :]:
            tail.add(t, maximize)
        total = lead.tally.merged(tail, maximize)
        progress = StudyProgress(
            done=total.done, failed=total.failed, running=total.running, infeasible=total.infeasible
        )
        if progress.done and total.best is not None:
            progress.best_value, progress.best_params = total.best.value, dict(total.best.params)
        return progress

    def _summary(self, study: Any) -> StudySummary:

        progress = self._progress(study)
        complete = feasible_trials(study)
        best = study.best_trial if complete else None
        return StudySummary(
            study_name=self.study_name,
            storage=self.storage_url,
            direction=self.spec.objective.direction,
            metric=self.spec.objective.metric,
            trials_complete=progress.done,
            trials_failed=progress.failed,
            trials_infeasible=progress.infeasible,
            best_value=best.value if best else None,
            best_params=dict(best.params) if best else {},
            best_trial=best.number if best else None,
            trial_values=[float(t.value) for t in complete if t.value is not None],
            best_returns=self._returns.get(best.number) if best else None,
        )
