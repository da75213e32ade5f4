"""Sampler adaptations: ask/tell studies (the driver, not `study.optimize`, runs the loop), and
CMA-ES state that is signed before Optuna unpickles it."""

from __future__ import annotations

import math
import pickle
import secrets
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from kubetrader.errors import FatalError
from kubetrader.optimize import signing
from kubetrader.optimize.finished_lead import lead_holds
from kubetrader.optimize.tpe_density import MixtureDensity, ParzenEstimator
from kubetrader.optimize.tpe_draws import draw_asks


def vectorized_tpe_log_ndtr() -> bool:
    """Let Optuna's TPE compute log Phi with SciPy's vectorized `scipy.special.log_ndtr`; True once done.

    Why: TPE's acquisition evaluates the Gaussian mass of every candidate under every past trial,
    and Optuna computes each log Phi in a Python function called per array element
    (`_truncnorm._log_ndtr` is `np.frompyfunc(_log_ndtr_single)`, optuna/samplers/_tpe/_truncnorm.py,
    a port of SciPy's code so Optuna need not depend on SciPy). That was 40-70 % of the study driver's
    time per TPE ask over 1,000 trials. SciPy (a dependency of ours) has the same function compiled;
    the two agree within 1e-12 (SciPy's is the more exact near x = 6; tests/optimize/test_samplers.py),
    so a seeded study stays as reproducible as before. Only the module's own global is replaced, and
    only on the Optuna layout it was checked against; on another layout TPE keeps Optuna's function
    (slower, same result).
    """
    import scipy.special
    from optuna.samplers._tpe import _truncnorm

    if getattr(_truncnorm, "_log_ndtr", None) is None or not hasattr(_truncnorm, "_log_ndtr_single"):
        return False
    _truncnorm._log_ndtr = scipy.special.log_ndtr
    return True


class _Column:
    """A list that only grows, with its NumPy copy made again only after it grew."""

    def __init__(self, dtype: type) -> None:
        self.items: list[Any] = []
        self._dtype = dtype
        self._array: np.ndarray = np.asarray([], dtype=dtype)

    def array(self) -> np.ndarray:
        if len(self._array) != len(self.items):
            self._array = np.asarray(self.items, dtype=self._dtype)
        return self._array


class _FinishedTrials:
    """What TPE reads of each COMPLETE trial, read once: its number, value, constraint score and
    parameters, and per (parameter, distribution) the internal representation as a column.

    A finished trial never changes (Optuna refuses updates to it), so a row is final once filled.
    Rows are keyed by trial id and belong to one study of one storage (reset on another).
    `lead` remembers the leading run of the study's trial list that held only finished trials
    at the last ask (its length, its COMPLETE rows, its last trial, how many were PRUNED): those
    stay where they are (a study's trials are only ever appended and a finished one never changes;
    another list shows in the identity check of the last one), so the next ask reads only the
    trials after them."""

    def __init__(self) -> None:
        self.owner: tuple[Any, int] | None = None
        self.row: dict[int, int] = {}
        self.number = _Column(int)
        self.value = _Column(float)
        self.score = _Column(float)
        self.params: list[dict[str, Any]] = []
        self._columns: dict[tuple[str, BaseDistribution], _Column] = {}
        self.lead: tuple[int, list[int], FrozenTrial | None, int] = (0, [], None, 0)

    def reset_for(self, study: optuna.Study) -> bool:
        """Start afresh for another study (True) or keep what was read of this one (False)."""
        owner = (study._storage, study._study_id)
        if self.owner is None or self.owner[0] is not owner[0] or self.owner[1] != owner[1]:
            self.__init__()  # type: ignore[misc]
            self.owner = owner
            return True
        return False

    def add(self, trial: FrozenTrial) -> int:
        found = self.row.get(trial._trial_id)
        if found is not None:
            return found
        found = self.row[trial._trial_id] = len(self.params)
        self.number.items.append(trial.number)
        self.value.items.append(float(trial.value))  # type: ignore[arg-type]
        # Optuna's `_get_infeasible_trial_score` (optuna/samplers/_tpe/sampler.py), once per trial.
        self.score.items.append(sum(v for v in trial.constraints.values() if v > 0))
        self.params.append(trial.params)
        return found

    def column(self, name: str, distribution: BaseDistribution) -> np.ndarray:
        """Internal values of `name` for every row, NaN where a trial lacks it (no distribution
        has NaN among its internal values: Optuna refuses NaN parameters)."""
        column = self._columns.setdefault((name, distribution), _Column(float))
        for params in self.params[len(column.items) :]:
            value = params.get(name)
            column.items.append(math.nan if value is None else float(distribution.to_internal_repr(value)))
        return column.array()


@dataclass
class _History:
    """One ask's reading of the study: its COMPLETE trials' rows in trial order, the running trials
    the constant liar counts (all but the trial being asked), and how many trials were PRUNED."""

    rows: list[int]
    running: list[FrozenTrial]
    pruned: int


@dataclass
class _Round:
    """What every ask that meets the same COMPLETE trials and the same search space shares: the
    split, the finished trials' observations, the good trials' estimator and, without the constant
    liar, the bad trials' one; and the proposals planned ahead for the asks still to come, each
    with the RNG state before its draw (so unused ones can be given back)."""

    rows: list[int]
    search_space: dict[str, BaseDistribution]
    mpe_below: Any
    above_columns: dict[str, np.ndarray]
    above_numbers: np.ndarray
    mpe_above: Any | None
    planned: deque[_Planned] = field(default_factory=deque)
    # Running trials read by this round's asks: the trial object read and its internal values
    # (None without every parameter of the search space).
    running: dict[int, tuple[FrozenTrial, list[float] | None]] = field(default_factory=dict)


@dataclass
class _Planned:
    """One ask planned ahead: the RNG state before its draw, its candidates, and with the constant
    liar their log density under the good trials' estimator (the bad trials' one is the ask's own),
    without it their scores and the ask's proposal."""

    state: Any
    samples: dict[str, np.ndarray]
    scores: np.ndarray
    best: dict[str, Any] | None


# Elements per array when a round's candidates are scored at once (candidates x kernels x
# parameters): 32 MB of float64, a few such temporaries at a time.
_SCORE_CHUNK_ELEMENTS = 1 << 22


class MemoizedTPESampler(optuna.samplers.TPESampler):
    """Optuna's TPE with the same proposals, at a fraction of the cost per ask over many trials.

    Why: profiled over a journal study of 1,000 and 5,000 trials, two thirds of an ask went to
    Python work done again for every past trial on every ask: splitting them into good and bad
    (`_split_trials` reads each trial's constraints from its system attributes) and turning their
    parameters into TPE's internal representation (`_get_internal_repr`); the storage's own trial
    retrieval was under a tenth, the Parzen estimators' fit and the candidates' evaluation (NumPy)
    a sixth. Here a finished trial is read once (`_FinishedTrials`) and the split is NumPy over
    its columns; running trials (the constant liar's, at most the worker count) are read each ask
    as Optuna does. The estimators, the candidates and the RNG draws are Optuna's own calls in
    Optuna's order on equal inputs, so a seed gives exactly the trials TPESampler gives
    (tests/optimize/test_tpe_cost.py compares them trial by trial). Studies this split does not
    cover (several objectives, pruned trials) go through Optuna's own `_sample`.

    Rounds. The driver asks a round of trials before it tells any (`expect_asks`), and every ask
    of a round meets the same COMPLETE trials: the split, the finished trials' observations and
    the good trials' estimator are made once per round (`_Round`; a COMPLETE trial told inside the
    round, such as an infeasible point, starts a new one). The round's candidates are drawn at
    once (kubetrader.optimize.tpe_draws: Optuna's RNG calls ask by ask, each ask's draw Optuna's
    to the last bit) and scored under the good trials' estimator in one call (row for row the
    values of one call per ask: NumPy's per-row reductions do not depend on the other rows).
    Without the constant liar the bad trials' estimator is the same for the whole round too, so
    the round is scored in one `_compute_acquisition_func` call and each ask takes the best of its
    own 24. With it (the default) each ask's bad trials include the round's earlier asks, so only
    that estimator is made per ask (its running trials read once per round) and scores the ask's
    own 24. Densities come from MixtureDensity (kubetrader.optimize.tpe_density: Optuna's
    `log_pdf` values, the discrete parameters' Gaussian masses kept from ask to ask), the per-ask
    estimator is Optuna's with its sigmas unsorted by a scatter (`ParzenEstimator`). Draws a
    round does not use (a trial told earlier than expected, another search space) are given back:
    the RNG returns to its state before the first unused one, so the next draw is the one Optuna
    would make. One ask per round where the draws interleave otherwise: `multivariate=False` or
    `group=True` (one draw per parameter or group), and parameters outside the relative search
    space (conditional spaces: their independent draws come between two asks' relative draws, so
    the first such draw ends the round's planning).

    Built on `TPESampler._sample` and `_sample_relative`, protected methods
    (optuna/samplers/_tpe/sampler.py, Optuna 5.0), whose bodies this replaces step for step:
    `_split_trials` (stable sorts, the same tie order), `_build_parzen_estimator` for one
    objective (no predetermined weights), then `_compute_acquisition_func` and `_compare`;
    `_sample_relative` counts the finished trials from the same walk instead of filtering the
    study's whole trial list in Python (3 ms per ask at 5,000 trials).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._finished = _FinishedTrials()
        self._round: _Round | None = None
        self._space: tuple[tuple[list[int], int], dict[str, BaseDistribution]] | None = None
        self._expected = 0
        self._density = MixtureDensity()
        self._last_read: tuple[list[FrozenTrial], tuple[int, int], _History] | None = None

    def expect_asks(self, count: int) -> None:
        """The driver's word that `count` asks come before its next tell: the round's proposals
        are planned together (without the constant liar). A wrong count costs time, not identity."""
        self._expected = max(0, count)

    def reseed_rng(self) -> None:
        self._drop_plan()
        super().reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """Optuna's, computed again only when a COMPLETE or PRUNED trial was added: the
        intersection search space changes with finished trials only (`_calculate` in
        optuna/search_space/intersection.py skips unfinished ones), so the asks of a round share it."""
        if not self._is_multivariate(study) or self._group or study._is_multi_objective():
            return super().infer_relative_search_space(study, trial)
        history = self._read(study, trial, fresh=False)
        key = (history.rows, history.pruned)
        if self._space is None or self._space[0] != key:
            self._space = (key, super().infer_relative_search_space(study, trial))
        return dict(self._space[1])

    def _sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if search_space == {} or study._is_multi_objective():
            return super()._sample_relative(study, trial, search_space)
        # Optuna counts COMPLETE and PRUNED trials of the study's cached list.
        history = self._read(study, trial, fresh=False)
        if len(history.rows) + history.pruned < self._n_startup_trials:
            return {}
        return self._sample(study, trial, search_space)

    def _sample(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if study._is_multi_objective():
            self._drop_plan()
            return super()._sample(study, trial, search_space)
        history = self._read(study, trial, fresh=self._constant_liar)
        if history.pruned:
            self._drop_plan()
            return super()._sample(study, trial, search_space)  # pruned: Optuna's own split
        round_ = self._round
        if round_ is None or round_.search_space != search_space:
            if round_ is not None and round_.planned:
                self._expected = 0  # another search space inside a round: plan no further ahead
            self._drop_plan()
            round_ = self._round = self._new_round(history.rows, search_space, study)
        elif round_.rows != history.rows:
            self._drop_plan()
            round_ = self._round = self._new_round(history.rows, search_space, study)
        if not round_.planned:
            multivariate = self._is_multivariate(study) and not self._group
            self._plan(round_, max(1, self._expected) if multivariate else 1, round_.mpe_above)
        self._expected = max(0, self._expected - 1)
        planned = round_.planned.popleft()
        best = planned.best
        if best is None:  # the constant liar: this ask's bad trials include the running ones
            observations = self._with_running(round_, history.running, search_space, study)
            mpe_above = self._estimator(observations, search_space)
            above = self._density.log_pdf(
                mpe_above._mixture_distribution, mpe_above._transform(planned.samples), self._n_ei_candidates
            )
            best = optuna.samplers.TPESampler._compare(planned.samples, planned.scores - above)
        return {name: dist.to_external_repr(best[name]) for name, dist in search_space.items()}

    def _read(self, study: optuna.Study, trial: FrozenTrial, *, fresh: bool) -> _History:
        """The study's COMPLETE, PRUNED and (with the constant liar) RUNNING trials, as Optuna's
        `_sample` filters them, read from the storage (`fresh`, as Optuna's constant liar does) or
        from the study's list cached for this ask. Only the trials after the leading finished ones
        are looked at (see `_FinishedTrials.lead`)."""
        trials = study._get_trials(deepcopy=False, use_cache=not fresh)
        memo = self._last_read
        if not fresh and memo is not None and memo[0] is trials and memo[1] == (len(trials), trial.number):
            return memo[2]  # the same ask's cached list, read again (search space, then the count)
        history = self._walk(study, trial, trials)
        self._last_read = None if fresh else (trials, (len(trials), trial.number), history)
        return history

    def _walk(self, study: optuna.Study, trial: FrozenTrial, trials: list[FrozenTrial]) -> _History:
        finished = self._finished
        if finished.reset_for(study):
            self._drop_plan()
            self._round = self._space = None
        start, lead_rows, last, lead_pruned = finished.lead
        if not lead_holds(trials, start, last):
            start, lead_rows, lead_pruned = 0, [], 0  # not the list the lead was read from: read it all
        rows = list(lead_rows)
        running: list[FrozenTrial] = []
        pruned = lead_pruned
        known = finished.row
        lead, lead_complete = start, len(lead_rows)
        for position in range(start, len(trials)):
            t = trials[position]
            state = t.state
            if state == TrialState.COMPLETE:
                row = known.get(t._trial_id)
                rows.append(finished.add(t) if row is None else row)
            elif state == TrialState.RUNNING:
                if self._constant_liar and t.number != trial.number:  # the liar leaves out the trial asked
                    running.append(t)
            elif state == TrialState.PRUNED:
                pruned += 1
            if lead == position and state.is_finished():
                lead += 1
                lead_complete = len(rows)
                lead_pruned = pruned
        if lead > start:
            finished.lead = (lead, rows[:lead_complete], trials[lead - 1], lead_pruned)
        return _History(rows, running, pruned)

    def _new_round(self, rows: list[int], search_space: dict[str, BaseDistribution], study: optuna.Study) -> _Round:
        if self._gamma is None:
            self._gamma = optuna.samplers._tpe.sampler.default_gamma
        below, above = self._split(np.asarray(rows, dtype=int), self._gamma(len(rows)), study)
        below_columns, _ = self._observations(below, search_space)
        above_columns, above_numbers = self._observations(above, search_space)
        return _Round(
            rows=rows,
            search_space=search_space,
            mpe_below=self._estimator(below_columns, search_space),
            above_columns=above_columns,
            above_numbers=above_numbers,
            mpe_above=None if self._constant_liar else self._estimator(above_columns, search_space),
        )

    def _plan(self, round_: _Round, count: int, mpe_above: Any | None) -> None:
        """Draw the next `count` asks' candidates (draw_asks: Optuna's draws ask after ask), score
        them under the good trials' estimator in one call and, without the constant liar (the bad
        trials' estimator known), under the bad trials' one too, each ask keeping its best."""
        n = self._n_ei_candidates
        mpe_below = round_.mpe_below
        draws = draw_asks(mpe_below._mixture_distribution, self._rng.rng, n, count)
        kernels = len(round_.above_numbers) + n  # an upper bound, with the running ones
        per_chunk = max(1, _SCORE_CHUNK_ELEMENTS // (n * kernels * max(1, len(round_.search_space))))
        for lo in range(0, count, per_chunk):
            chunk = draws[lo : lo + per_chunk]
            stacked = np.concatenate([samples for _, samples in chunk])
            if mpe_above is None:
                below = self._density.log_pdf(mpe_below._mixture_distribution, stacked, n)
            else:
                scores = self._compute_acquisition_func(mpe_below._untransform(stacked), mpe_below, mpe_above)
            for j, (state, samples) in enumerate(chunk):
                candidates = mpe_below._untransform(samples)
                rows = slice(j * n, (j + 1) * n)
                if mpe_above is None:
                    round_.planned.append(_Planned(state, candidates, below[rows], None))
                else:
                    best = optuna.samplers.TPESampler._compare(candidates, scores[rows])
                    round_.planned.append(_Planned(state, candidates, scores[rows], best))

    def _compute_acquisition_func(self, samples: dict[str, np.ndarray], mpe_below: Any, mpe_above: Any) -> np.ndarray:
        """Optuna's (log density under the good trials' estimator minus the bad ones'), with the
        densities from MixtureDensity: the same values, the discrete masses kept across asks."""
        n = self._n_ei_candidates
        below = self._density.log_pdf(mpe_below._mixture_distribution, mpe_below._transform(samples), n)
        above = self._density.log_pdf(mpe_above._mixture_distribution, mpe_above._transform(samples), n)
        return below - above

    def _drop_plan(self) -> None:
        """Give back the draws of planned asks that will not be made: the RNG returns to its state
        before the first of them."""
        round_ = self._round
        if round_ is not None and round_.planned:
            self._rng.rng.set_state(round_.planned[0].state)
            round_.planned.clear()

    def _split(self, rows: np.ndarray, n_below: int, study: optuna.Study) -> tuple[np.ndarray, np.ndarray]:
        """Optuna's `_split_trials` for COMPLETE trials of one objective: the best `n_below`
        feasible ones are good, then (if short) the least infeasible; the rest are bad. Rows of
        each side in trial order."""
        finished = self._finished
        score = finished.score.array()[rows]
        infeasible = score > 0
        complete, violating = rows[~infeasible], rows[infeasible]
        values = finished.value.array()[complete]
        # `sorted(..., reverse=True)` keeps ties in their order, as a stable sort of -value does.
        keys = -values if study.direction == optuna.study.StudyDirection.MAXIMIZE else values
        ranked = complete[np.argsort(keys, kind="stable")]
        take = min(n_below, len(ranked))
        below, above = [ranked[:take]], [ranked[take:]]
        rest = max(0, n_below - take)
        ranked_violating = violating[np.argsort(score[infeasible], kind="stable")]
        take = min(rest, len(ranked_violating))
        below.append(ranked_violating[:take])
        above.append(ranked_violating[take:])
        number = finished.number.array()
        good, bad = np.concatenate(below), np.concatenate(above)
        return good[np.argsort(number[good], kind="stable")], bad[np.argsort(number[bad], kind="stable")]

    def _observations(
        self, rows: np.ndarray, search_space: dict[str, BaseDistribution]
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Optuna's `_get_internal_repr` for finished rows: each trial that has every parameter, in
        trial order, and those trials' numbers."""
        columns = {name: self._finished.column(name, d)[rows] for name, d in search_space.items()}
        keep = np.ones(len(rows), dtype=bool)
        for values in columns.values():
            keep &= ~np.isnan(values)
        return {name: values[keep] for name, values in columns.items()}, self._finished.number.array()[rows][keep]

    def _with_running(
        self,
        round_: _Round,
        running: list[FrozenTrial],
        search_space: dict[str, BaseDistribution],
        study: optuna.Study,
    ) -> dict[str, np.ndarray]:
        """The bad trials' observations with the running trials merged in by number (Optuna's
        `_get_internal_repr` over `_split_trials`' above list, which sorts them by number)."""
        if not running:
            return round_.above_columns
        extra: dict[str, list[float]] = {name: [] for name in search_space}
        extra_numbers = []
        for t in running:
            # A storage replaces a trial's object when it changes (copy-on-write in Optuna's
            # journal replay and in-memory storage): the same object has the same params.
            seen = round_.running.get(t._trial_id)
            if seen is None or seen[0] is not t:
                params = self._get_params(t, study)
                values = None
                if search_space.keys() <= params.keys():
                    values = [float(d.to_internal_repr(params[name])) for name, d in search_space.items()]
                seen = round_.running[t._trial_id] = (t, values)
            if seen[1] is not None:
                extra_numbers.append(t.number)
                for name, value in zip(search_space, seen[1], strict=True):
                    extra[name].append(value)
        if not extra_numbers:
            return round_.above_columns
        merged = {name: np.concatenate([round_.above_columns[name], extra[name]]) for name in search_space}
        numbers = round_.above_numbers
        if len(numbers) and numbers[-1] > extra_numbers[0]:  # a straggler among the finished: sort by number
            order = np.argsort(np.concatenate([numbers, np.asarray(extra_numbers, dtype=int)]), kind="stable")
            merged = {name: values[order] for name, values in merged.items()}
        return merged  # running trials come in trial order (`_read`), so after the finished ones as they are

    def _estimator(self, observations: dict[str, np.ndarray], search_space: dict[str, BaseDistribution]) -> Any:
        """`_build_parzen_estimator` for one objective, from observations already in hand."""
        cls = self._parzen_estimator_cls
        if cls is optuna.samplers._tpe.parzen_estimator._ParzenEstimator:
            cls = ParzenEstimator  # Optuna's, its sigmas unsorted by a scatter (tpe_density)
        mpe = cls(observations, search_space, self._parzen_estimator_parameters)
        if not isinstance(mpe, optuna.samplers._tpe.parzen_estimator._ParzenEstimator):
            raise RuntimeError("_parzen_estimator_cls must override _ParzenEstimator.")
        return mpe


class AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its `study.stop()` on the last grid point.

    `GridSampler.after_trial` calls `study.stop()` once every grid point has been
    visited, and `Study.stop` raises RuntimeError outside `study.optimize` ("`Study.stop`
    is supposed to be invoked inside an objective function or a callback",
    optuna/study/study.py). The study driver tells results through `study.tell`, so the
    last tell of a grid crashed. The driver checks `is_exhausted` before every ask
    instead, which ends the study cleanly with the whole grid.
    """

    def after_trial(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        state: optuna.trial.TrialState,
        values: Sequence[float] | None,
    ) -> None:
        return None


def grid_sampler(search_space: dict[str, list[Any]], seed: int | None) -> AskTellGridSampler:
    return AskTellGridSampler(search_space, seed=seed)


class StudyStateTamperedError(FatalError):
    """A trial's stored sampler state does not carry our signature: it is never unpickled."""


class SignedCmaEsSampler(optuna.samplers.CmaEsSampler):
    """Optuna's CMA-ES sampler whose pickled optimizer is signed and verified before loading.

    Optuna stores `pickle.dumps(optimizer).hex()` in chunks of at most 2045 characters
    (`cma:optimizer:0..n`, `sepcma:` when separable) and `_restore_optimizer` unpickles the
    newest trial's chunks on every ask (optuna/samplers/_cmaes.py, optuna 5.0). Here the
    stored string is `<HMAC-SHA256 hex of the pickle bytes><pickle hex>`, split the same
    way; on restore the chunks must be exactly `:0..n-1` and the HMAC must match
    (`hmac.compare_digest`) before `pickle.loads` sees a byte. Anything else raises
    StudyStateTamperedError naming the trial (the driver exits 2), never a fallback to
    unsigned state. The key comes from kubetrader.optimize.signing.
    """

    def __init__(self, *, key: bytes, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._signing_key = key

    def _split_optimizer_str(self, optimizer_str: str) -> dict[str, str]:
        signature = signing.sign(self._signing_key, bytes.fromhex(optimizer_str))
        return super()._split_optimizer_str(signature + optimizer_str)

    def _restore_optimizer(self, completed_trials: list[optuna.trial.FrozenTrial]) -> Any:
        prefix = self._attr_key_optimizer + ":"
        for trial in reversed(completed_trials):
            chunks = {key: value for key, value in trial.system_attrs.items() if key.startswith(prefix)}
            if not chunks:
                continue
            return self._verified_load(trial.number, chunks, prefix)
        return None

    def _verified_load(self, number: int, chunks: dict[str, Any], prefix: str) -> Any:
        def refuse(problem: str) -> StudyStateTamperedError:
            return StudyStateTamperedError(
                f"trial {number}: its stored CMA-ES state ({prefix}*) {problem}; refusing to unpickle it "
                "(the study storage was written by something other than this sampler and its key)"
            )

        expected = [f"{prefix}{i}" for i in range(len(chunks))]
        if sorted(chunks) != sorted(expected) or not all(isinstance(v, str) for v in chunks.values()):
            raise refuse("is not a sequence of string chunks")
        stored = "".join(chunks[key] for key in expected)
        signature, payload_hex = stored[: signing.SIGNATURE_HEX_LENGTH], stored[signing.SIGNATURE_HEX_LENGTH :]
        try:
            payload = bytes.fromhex(payload_hex)
        except ValueError:
            raise refuse("is not hexadecimal") from None
        if not signing.verify(self._signing_key, payload, signature):
            raise refuse("has no valid signature")
        return pickle.loads(payload)


def cmaes_sampler(*, seed: int | None, startup_trials: int, storage_url: str | None) -> SignedCmaEsSampler:
    """The CMA-ES sampler for a study on `storage_url` (refused without a key where it is shared).

    A study in this process's memory (`storage_url` None) is read by nobody else: a key
    of its own, thrown away with it."""
    key = secrets.token_bytes(32) if storage_url is None else signing.signing_key(storage_url)
    return SignedCmaEsSampler(key=key, seed=seed, n_startup_trials=startup_trials)
