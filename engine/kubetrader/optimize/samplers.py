"""Sampler adaptations: ask/tell studies (the driver, not `study.optimize`, runs the loop), and
CMA-ES state that is signed before Optuna unpickles it."""

from __future__ import annotations

import math
import pickle
import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from kubetrader.errors import FatalError
from kubetrader.optimize import signing


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
    at the last ask (its length, its COMPLETE rows, its last trial): those stay where they are
    (finished trials never leave the list, and a trial that enters it before them shifts the last
    one, which the identity check sees), so the next ask reads only the trials after them."""

    def __init__(self) -> None:
        self.owner: tuple[Any, int] | None = None
        self.row: dict[int, int] = {}
        self.number = _Column(int)
        self.value = _Column(float)
        self.score = _Column(float)
        self.params: list[dict[str, Any]] = []
        self._columns: dict[tuple[str, BaseDistribution], _Column] = {}
        self.lead: tuple[int, list[int], FrozenTrial | None] = (0, [], None)

    def reset_for(self, study: optuna.Study) -> None:
        owner = (study._storage, study._study_id)
        if self.owner is None or self.owner[0] is not owner[0] or self.owner[1] != owner[1]:
            self.__init__()  # type: ignore[misc]
            self.owner = owner

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
    (tests/optimize/test_samplers.py compares them trial by trial). Studies this split does not
    cover (several objectives, pruned trials) go through Optuna's own `_sample`.

    Built on `TPESampler._sample`, a protected method (optuna/samplers/_tpe/sampler.py, Optuna 5.0),
    whose body this replaces step for step: `_split_trials` (stable sorts, the same tie order),
    `_build_parzen_estimator` for one objective (no predetermined weights), then
    `_compute_acquisition_func` and `_compare`.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._finished = _FinishedTrials()

    def _sample(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if study._is_multi_objective():
            return super()._sample(study, trial, search_space)
        states: tuple[TrialState, ...] = (TrialState.COMPLETE, TrialState.PRUNED)
        if self._constant_liar:
            states += (TrialState.RUNNING,)
        trials = study._get_trials(deepcopy=False, states=states, use_cache=not self._constant_liar)
        finished = self._finished
        finished.reset_for(study)
        start, lead_rows, last = finished.lead
        if not (start <= len(trials) and (start == 0 or trials[start - 1] is last)):
            start, lead_rows = 0, []  # something entered the list before the lead: read it all
        rows = list(lead_rows)
        running: list[FrozenTrial] = []
        known = finished.row
        lead = start  # the list's leading finished trials, as far as this ask has seen
        for position in range(start, len(trials)):
            t = trials[position]
            if t.state == TrialState.COMPLETE:
                row = known.get(t._trial_id)
                rows.append(finished.add(t) if row is None else row)
                if lead == position:
                    lead += 1
            elif t.state == TrialState.RUNNING:
                if t.number != trial.number:  # the constant liar leaves out the trial being asked
                    running.append(t)
            else:
                return super()._sample(study, trial, search_space)  # pruned: Optuna's own split
        if lead > start:
            finished.lead = (lead, rows[: len(lead_rows) + lead - start], trials[lead - 1])
        if self._gamma is None:
            self._gamma = optuna.samplers._tpe.sampler.default_gamma
        below, above = self._split(np.asarray(rows, dtype=int), self._gamma(len(rows)), study)
        mpe_below = self._estimator(self._observations(below, [], search_space), search_space)
        mpe_above = self._estimator(self._observations(above, running, search_space, study), search_space)
        samples_below = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        acq_func_vals = self._compute_acquisition_func(samples_below, mpe_below, mpe_above)
        ret = optuna.samplers.TPESampler._compare(samples_below, acq_func_vals)
        for param_name, dist in search_space.items():
            ret[param_name] = dist.to_external_repr(ret[param_name])
        return ret

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
        self,
        rows: np.ndarray,
        running: list[FrozenTrial],
        search_space: dict[str, BaseDistribution],
        study: optuna.Study | None = None,
    ) -> dict[str, np.ndarray]:
        """Optuna's `_get_internal_repr`: each trial that has every parameter, in trial order
        (finished rows, then the running trials merged in by number)."""
        columns = {name: self._finished.column(name, d)[rows] for name, d in search_space.items()}
        keep = np.ones(len(rows), dtype=bool)
        for values in columns.values():
            keep &= ~np.isnan(values)
        columns = {name: values[keep] for name, values in columns.items()}
        if not running:
            return columns
        assert study is not None
        numbers = [self._finished.number.array()[rows][keep]]
        extra: dict[str, list[float]] = {name: [] for name in search_space}
        extra_numbers = []
        for t in running:
            params = self._get_params(t, study)
            if search_space.keys() <= params.keys():
                extra_numbers.append(t.number)
                for name, d in search_space.items():
                    extra[name].append(float(d.to_internal_repr(params[name])))
        numbers.append(np.asarray(extra_numbers, dtype=int))
        order = np.argsort(np.concatenate(numbers), kind="stable")
        return {
            name: np.concatenate([columns[name], np.asarray(extra[name], dtype=float)])[order] for name in search_space
        }

    def _estimator(self, observations: dict[str, np.ndarray], search_space: dict[str, BaseDistribution]) -> Any:
        """`_build_parzen_estimator` for one objective, from observations already in hand."""
        mpe = self._parzen_estimator_cls(observations, search_space, self._parzen_estimator_parameters)
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
