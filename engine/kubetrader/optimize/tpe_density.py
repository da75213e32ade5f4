"""Optuna's TPE mixture density (`_MixtureOfProductDistribution.log_pdf`), value for value, with the
Gaussian masses of discrete parameters kept from one ask to the next.

Why: with the constant liar every ask of a study scores its 24 candidates under a new estimator of
the bad trials (the running ones change each ask), and for a discrete parameter (an int, a stepped
float) Optuna's `log_pdf` finds the estimator's distinct kernels (mu, sigma) with two argsorts over
all of them, the distinct (left, right) bounds of the candidates' grid with two more, and computes
each Gaussian mass again (optuna/samplers/_tpe/probability_distributions.py, Optuna 5.0). Profiled
over 2,000 trials that was half the driver's time. The kernels barely change between asks (the
finished trials' are the same, sigma is clipped from below) and a discrete parameter takes few
values, so here each (value, kernel) mass is computed once, with Optuna's own `_log_gauss_mass`,
and looked up after: a mass depends on nothing but its cell's x, mu and sigma.

Except through `erf`. Optuna's `_erf.erf` computes arrays under 2,000 elements with `math.erf` and
larger ones with a NumPy port of FreeBSD's erf that differs from it in the last bit for about one
value in eight, so Optuna's mass of a cell depends on how many central cells (mu within the cell's
step) its call held. Masses here are computed in calls of fewer than 2,000 elements (the `math.erf`
side), which is what Optuna's call holds whenever its distinct central cells and its distinct
kernels number under 2,000: the counts here bound those from above, and any call where they do not
stay under goes to Optuna's own `log_pdf`, one ask's candidates at a time. Categorical and
continuous parameters, the weights and the final log-sum-exp are Optuna's code in Optuna's order on
the same arrays, so the result is Optuna's to the last bit (tests/optimize/test_tpe_density.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.samplers._tpe import _truncnorm
from optuna.samplers._tpe.parzen_estimator import EPS, _ParzenEstimator, _ParzenEstimatorParameters
from optuna.samplers._tpe.probability_distributions import (
    _BatchedCategoricalDistributions,
    _BatchedDiscreteTruncLogNormDistributions,
    _BatchedDiscreteTruncNormDistributions,
    _BatchedDistributions,
    _BatchedTruncLogNormDistributions,
    _BatchedTruncNormDistributions,
    _MixtureOfProductDistribution,
)

# Optuna's `_erf.erf` takes the `math.erf` path below this many elements (optuna/samplers/_tpe/_erf.py).
ERF_SMALL_ARRAY = 2000
# Cells kept per parameter before its table starts afresh (a stepped float over a wide range).
_MAX_CELLS = 1 << 21


def log_gauss_mass_small(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Optuna's `_log_gauss_mass` elementwise, in calls that keep its `erf` on the `math.erf` side."""
    step = ERF_SMALL_ARRAY - 1
    if len(a) <= step:
        return np.asarray(_truncnorm._log_gauss_mass(a, b))
    parts = [_truncnorm._log_gauss_mass(a[i : i + step], b[i : i + step]) for i in range(0, len(a), step)]
    return np.concatenate(parts)


@dataclass
class _MassTable:
    """One discrete parameter's masses: rows are candidate values, columns kernels (mu, sigma).

    A cell is computed when a call first needs it, so a young study, whose kernels all change with
    every trial, computes what Optuna's call computes and an older one only its new kernels' cells.
    `state` is 0 for a cell not computed, 1 once computed, 2 if it was Optuna's central case (the
    cells its `erf` computes); `opening` is `0 + mass - norm` (Optuna's first two steps on its row
    of zeros), `norm[col]` a kernel's log mass over the whole range. `recent` keeps the
    last calls' kernel arrays and columns: consecutive estimators share most kernels, in place."""

    step: float
    is_log: bool
    adapted_low: float
    adapted_high: float
    rows: dict[float, int] = field(default_factory=dict)
    left: np.ndarray = field(default_factory=lambda: np.empty(0))
    right: np.ndarray = field(default_factory=lambda: np.empty(0))
    columns: dict[tuple[float, float], int] = field(default_factory=dict)
    mu: np.ndarray = field(default_factory=lambda: np.empty(0))
    sigma: np.ndarray = field(default_factory=lambda: np.empty(0))
    norm: np.ndarray = field(default_factory=lambda: np.empty(0))
    mass: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    opening: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    state: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int8))
    recent: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)

    def rows_of(self, values: np.ndarray) -> np.ndarray:
        """The row of each value, added where new."""
        rows = self.rows
        found = np.fromiter((rows.setdefault(v, len(rows)) for v in values.tolist()), dtype=np.intp, count=len(values))
        have = len(self.left)
        if len(rows) > have:
            new = np.fromiter(rows, dtype=float, count=len(rows))[have:]  # dicts keep insertion order
            half = self.step / 2
            self.left = np.concatenate([self.left, np.log(new - half) if self.is_log else new - half])
            self.right = np.concatenate([self.right, np.log(new + half) if self.is_log else new + half])
        return found

    def columns_of(self, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """The column of each kernel (mu, sigma), added where new: exact float pairs, as Optuna's
        `_unique_inverse_2d` compares them."""
        cols = np.full(len(mu), -1, dtype=np.intp)
        for old_mu, old_sigma, old_cols in self.recent:
            n = min(len(mu), len(old_mu))
            same = mu[:n] == old_mu[:n]
            same &= sigma[:n] == old_sigma[:n]
            np.copyto(cols[:n], old_cols[:n], where=same & (cols[:n] < 0))
        columns = self.columns
        have = len(columns)
        todo = np.flatnonzero(cols < 0)
        cols[todo] = np.fromiter(
            (columns.setdefault(k, len(columns)) for k in zip(mu[todo].tolist(), sigma[todo].tolist(), strict=True)),
            dtype=np.intp,
            count=len(todo),
        )
        if len(columns) > have:
            new = np.asarray(list(columns)[have:], dtype=float).reshape(-1, 2)
            new_mu, new_sigma = new[:, 0].copy(), new[:, 1].copy()
            low, high = (self.adapted_low - new_mu) / new_sigma, (self.adapted_high - new_mu) / new_sigma
            norm = log_gauss_mass_small(low, high)
            self.mu = np.concatenate([self.mu, new_mu])
            self.sigma = np.concatenate([self.sigma, new_sigma])
            self.norm = np.concatenate([self.norm, norm])
        self.recent = [(mu, sigma, cols), *self.recent[:1]]
        return cols

    def fill(self, rows: np.ndarray, cols: np.ndarray) -> int:
        """Compute the cells of `rows` x `cols` (distinct) not yet known; returns the grid's
        central cells (an upper bound of the distinct central (a, b) pairs Optuna's call gives
        its `erf`)."""
        self._grow(len(self.rows), len(self.columns))
        state = self.state[np.ix_(rows, cols)]
        todo_r, todo_c = np.nonzero(state == 0)
        if len(todo_r):
            r, c = rows[todo_r], cols[todo_c]
            a = (self.left[r] - self.mu[c]) / self.sigma[c]
            b = (self.right[r] - self.mu[c]) / self.sigma[c]
            mass = log_gauss_mass_small(a, b)
            self.mass[r, c] = mass
            self.opening[r, c] = (0.0 + mass) - self.norm[c]
            # Optuna's case split in `_log_gauss_mass`: neither left (b <= 0) nor right (a > 0).
            central = ~((b <= 0) | (a > 0))
            self.state[r, c] = 1 + central
            state[todo_r, todo_c] = 1 + central
        return int(np.count_nonzero(state == 2))

    def gather(self, rows: np.ndarray, cols: np.ndarray, *, opening: bool = False) -> np.ndarray:
        """`mass[rows][:, cols]` (or `opening`'s), through the smaller intermediate (a round's
        many candidates against a few kernels, or one ask's few against many)."""
        table = self.opening if opening else self.mass
        n_rows, n_cols = len(self.rows), len(self.columns)
        if len(rows) * n_cols <= n_rows * len(cols):
            return np.take(table[rows, :n_cols], cols, axis=1)
        return np.take(table[:n_rows, cols], rows, axis=0)

    def _grow(self, n_rows: int, n_cols: int) -> None:
        have_r, have_c = self.mass.shape
        if n_rows <= have_r and n_cols <= have_c:
            return
        shape = (
            have_r if n_rows <= have_r else max(n_rows, 2 * have_r, 32),
            have_c if n_cols <= have_c else max(n_cols, 2 * have_c, 256),
        )
        mass, opening, state = np.empty(shape), np.empty(shape), np.zeros(shape, dtype=np.int8)
        mass[:have_r, :have_c] = self.mass
        opening[:have_r, :have_c] = self.opening
        state[:have_r, :have_c] = self.state
        self.mass, self.opening, self.state = mass, opening, state

    @property
    def size(self) -> int:
        return self.mass.size


class MixtureDensity:
    """`log_pdf` of Optuna's TPE mixtures, equal to `_MixtureOfProductDistribution.log_pdf` row for
    row as if called on each `block` of rows alone (one ask's candidates), with the discrete
    parameters' masses kept across calls (module docstring)."""

    def __init__(self) -> None:
        self._tables: dict[tuple[Any, ...], _MassTable] = {}
        self.fallbacks = 0  # calls handed to Optuna's own log_pdf (see the module docstring)

    def log_pdf(self, mixture: _MixtureOfProductDistribution, x: np.ndarray, block: int) -> np.ndarray:
        discrete = {}
        for i, d in enumerate(mixture.distributions):
            if isinstance(d, _BatchedDiscreteTruncNormDistributions | _BatchedDiscreteTruncLogNormDistributions):
                table = self._table(d)
                rows = table.rows_of(x[:, i])
                cols = table.columns_of(d.mu, d.sigma)
                used = np.flatnonzero(np.bincount(cols, minlength=len(table.columns)))
                # Optuna's masses of the whole range: one call over the distinct kernels.
                if len(used) >= ERF_SMALL_ARRAY or table.fill(np.unique(rows), used) >= ERF_SMALL_ARRAY:
                    return self._optunas(mixture, x, block)
                discrete[i] = (table, rows, cols)
        return self._log_pdf(mixture, x, discrete)

    def _optunas(self, mixture: _MixtureOfProductDistribution, x: np.ndarray, block: int) -> np.ndarray:
        self.fallbacks += 1
        return np.concatenate([mixture.log_pdf(x[lo : lo + block]) for lo in range(0, len(x), block)])

    def _table(self, d: Any) -> _MassTable:
        key = (type(d), d.low, d.high, d.step)
        table = self._tables.get(key)
        if table is None or table.size > _MAX_CELLS:  # a wide stepped range: start afresh
            table = self._tables[key] = _MassTable(d.step, d.is_log, d.adapted_low, d.adapted_high)
        return table

    @staticmethod
    def _log_pdf(
        mixture: _MixtureOfProductDistribution, x: np.ndarray, discrete: dict[int, tuple[_MassTable, Any, Any]]
    ) -> np.ndarray:
        """Optuna's `_MixtureOfProductDistribution.log_pdf` body, with the discrete masses looked up
        (a leading discrete parameter's two steps on Optuna's row of zeros, `0 + mass - norm`, kept
        as one table) and the last steps in place."""
        weighted_log_pdf = None
        cont_dists = []
        x_cont = []
        lows_cont = []
        highs_cont = []
        for i, d in enumerate(mixture.distributions):
            if isinstance(d, _BatchedCategoricalDistributions):
                if weighted_log_pdf is None:
                    weighted_log_pdf = np.zeros((len(x), len(mixture.weights)), dtype=np.float64)
                xi = x[:, i, np.newaxis, np.newaxis].astype(np.int64)
                weighted_log_pdf += np.log(np.take_along_axis(d.weights[np.newaxis], xi, axis=-1))[..., 0]
                continue
            if d.step == 0.0:
                cont_dists.append(d)
                x_cont.append(np.log(x[:, i]) if d.is_log else x[:, i])
                lows_cont.append(d.adapted_low)
                highs_cont.append(d.adapted_high)
            else:
                table, rows, cols = discrete[i]
                if weighted_log_pdf is None:
                    weighted_log_pdf = table.gather(rows, cols, opening=True)
                else:
                    weighted_log_pdf += table.gather(rows, cols)
                    weighted_log_pdf -= table.norm[cols]
        if weighted_log_pdf is None:
            weighted_log_pdf = np.zeros((len(x), len(mixture.weights)), dtype=np.float64)
        if x_cont:
            mus_cont = np.asarray([d.mu for d in cont_dists]).T
            sigmas_cont = np.asarray([d.sigma for d in cont_dists]).T
            weighted_log_pdf += _truncnorm.logpdf(
                np.asarray(x_cont).T[:, np.newaxis, :],
                a=(np.asarray(lows_cont) - mus_cont) / sigmas_cont,
                b=(np.asarray(highs_cont) - mus_cont) / sigmas_cont,
                loc=mus_cont,
                scale=sigmas_cont,
            ).sum(axis=-1)
        weighted_log_pdf += np.log(mixture.weights[np.newaxis])
        max_ = weighted_log_pdf.max(axis=1)
        max_[np.isneginf(max_)] = 0
        np.subtract(weighted_log_pdf, max_[:, None], out=weighted_log_pdf)
        np.exp(weighted_log_pdf, out=weighted_log_pdf)
        with np.errstate(divide="ignore"):
            return np.log(weighted_log_pdf.sum(axis=1)) + max_


class ParzenEstimator(_ParzenEstimator):
    """Optuna's `_ParzenEstimator` with the kernels' sigmas put back in trial order by a scatter.

    Why: `_calculate_numerical_distributions` (optuna/samplers/_tpe/parzen_estimator.py, Optuna
    5.0) sorts the observations, takes each one's larger gap to a neighbour, then undoes the sort
    with a second argsort (`np.argsort(sorted_indices)`); with the constant liar the bad trials'
    estimator is built on every ask, and at 5,000 trials the two argsorts per parameter were most
    of its cost. The inverse of a permutation is one array, however it is found, so a scatter gives
    the same sigmas; the first sort (whose order among tied values sets which of them gets which
    gap) is Optuna's own call. The rest is Optuna's code."""

    def _calculate_numerical_distributions(
        self,
        observations: np.ndarray,
        search_space: FloatDistribution | IntDistribution,
        parameters: _ParzenEstimatorParameters,
    ) -> _BatchedDistributions:
        low = search_space.low
        high = search_space.high
        if search_space.step is not None:
            low -= search_space.step / 2
            high += search_space.step / 2
        if search_space.log:
            observations = np.log(observations)
            low = np.log(low)
            high = np.log(high)

        mus = observations

        def compute_sigmas() -> np.ndarray:
            sorted_indices = np.argsort(mus)
            sorted_mus = mus[sorted_indices]
            sorted_mus_with_endpoints = np.empty(len(mus) + 2, dtype=float)
            sorted_mus_with_endpoints[0] = low
            sorted_mus_with_endpoints[1:-1] = sorted_mus
            sorted_mus_with_endpoints[-1] = high

            sorted_sigmas = np.maximum(
                sorted_mus_with_endpoints[1:-1] - sorted_mus_with_endpoints[0:-2],
                sorted_mus_with_endpoints[2:] - sorted_mus_with_endpoints[1:-1],
            )

            if not parameters.consider_endpoints and sorted_mus_with_endpoints.shape[0] >= 4:
                sorted_sigmas[0] = sorted_mus_with_endpoints[2] - sorted_mus_with_endpoints[1]
                sorted_sigmas[-1] = sorted_mus_with_endpoints[-2] - sorted_mus_with_endpoints[-3]

            inverse = np.empty_like(sorted_indices)
            inverse[sorted_indices] = np.arange(len(sorted_indices))
            sigmas = sorted_sigmas[inverse]

            maxsigma = high - low
            if parameters.consider_magic_clip:
                n_kernels = len(observations) + 1  # +1 for the prior, as Optuna counts
                minsigma = (high - low) / min(100.0, (1.0 + n_kernels))
            else:
                minsigma = EPS
            return np.asarray(np.clip(sigmas, minsigma, maxsigma))

        sigmas = compute_sigmas()
        mus = np.append(mus, [0.5 * (low + high)])
        sigmas = np.append(sigmas, [high - low])

        if search_space.step is None:
            if not search_space.log:
                return _BatchedTruncNormDistributions(mus, sigmas, search_space.low, search_space.high)
            return _BatchedTruncLogNormDistributions(mus, sigmas, search_space.low, search_space.high)
        if not search_space.log:
            return _BatchedDiscreteTruncNormDistributions(
                mus, sigmas, search_space.low, search_space.high, search_space.step
            )
        return _BatchedDiscreteTruncLogNormDistributions(
            mus, sigmas, search_space.low, search_space.high, search_space.step
        )
