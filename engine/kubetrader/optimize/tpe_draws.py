"""Several asks' TPE candidates drawn at once, each the draw Optuna's sampler makes for that ask.

Why: a TPE ask draws its 24 candidates from the good trials' estimator
(`_MixtureOfProductDistribution.sample`, optuna/samplers/_tpe/probability_distributions.py, Optuna
5.0): three RNG calls, then a truncated-normal inverse CDF solved by Newton's method
(`_truncnorm.ppf` and `_ndtri_exp`), some hundred small NumPy calls, a tenth of the study driver's
time per ask. The asks of a round draw from the same estimator, so here the RNG calls are made ask
by ask in Optuna's order (the stream is Optuna's) and the arithmetic once for the round. The one
step that is not element by element is the Newton loop: Optuna's iterates until every element of
its call has converged, so an element's last digits depend on its call's other elements. Here each
ask's left and right tails (Optuna's two `_ndtri_exp` calls) are a group that stops iterating when
its own elements have converged, as that call would: the values are Optuna's to the last bit
(tests/optimize/test_tpe_draws.py). Gaussian masses are computed in calls under Optuna's `erf` size
bound (kubetrader.optimize.tpe_density); a draw of more elements than that goes to Optuna's own
`sample`, ask by ask.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from optuna.samplers._tpe import _truncnorm
from optuna.samplers._tpe.probability_distributions import (
    _BatchedCategoricalDistributions,
    _MixtureOfProductDistribution,
)

from kubetrader.optimize.tpe_density import ERF_SMALL_ARRAY, log_gauss_mass_small


def draw_asks(
    mixture: _MixtureOfProductDistribution, rng: np.random.RandomState, size: int, count: int
) -> list[tuple[Any, np.ndarray]]:
    """`count` asks' draws of `size` candidates, each `(RNG state before it, mixture.sample(rng, size))`
    as `count` calls in turn would give, leaving the RNG where they would."""
    distributions = mixture.distributions
    numerical = [i for i, d in enumerate(distributions) if not isinstance(d, _BatchedCategoricalDistributions)]
    if len(numerical) * size >= ERF_SMALL_ARRAY:
        return [(rng.get_state(), mixture.sample(rng, size)) for _ in range(count)]
    states, active, quantiles, uniforms = [], [], [], []
    for _ in range(count):  # Optuna's RNG calls, in its order
        states.append(rng.get_state())
        active.append(rng.choice(len(mixture.weights), p=mixture.weights, size=size))
        quantiles.append([rng.rand(size) for d in distributions if isinstance(d, _BatchedCategoricalDistributions)])
        if numerical:
            uniforms.append(rng.uniform(low=0, high=1, size=(len(numerical), size)))
    active_indices = np.concatenate(active)
    ret = np.empty((count * size, len(distributions)), dtype=float)
    categorical = 0
    for i, d in enumerate(distributions):
        if isinstance(d, _BatchedCategoricalDistributions):
            rnd_quantile = np.concatenate([q[categorical] for q in quantiles])
            categorical += 1
            cum_probs = np.cumsum(d.weights[active_indices, :], axis=-1)
            assert np.isclose(cum_probs[:, -1], 1).all()
            cum_probs[:, -1] = 1  # Avoid numerical errors.
            ret[:, i] = np.sum(cum_probs < rnd_quantile[:, np.newaxis], axis=-1)
    if numerical:
        numerical_dists: list[Any] = [distributions[i] for i in numerical]
        active_mus = np.asarray([d.mu[active_indices] for d in numerical_dists])
        active_sigmas = np.asarray([d.sigma[active_indices] for d in numerical_dists])
        adapted_lows = np.asarray([d.adapted_low for d in numerical_dists])
        adapted_highs = np.asarray([d.adapted_high for d in numerical_dists])
        ask = np.broadcast_to(np.repeat(np.arange(count), size), active_mus.shape)
        ret[:, numerical] = (
            _ppf(
                np.concatenate(uniforms, axis=1),
                (adapted_lows[:, np.newaxis] - active_mus) / active_sigmas,
                (adapted_highs[:, np.newaxis] - active_mus) / active_sigmas,
                ask,
                count,
            )
            * active_sigmas
            + active_mus
        ).T
        log_inds = [i for i, d in zip(numerical, numerical_dists, strict=True) if d.is_log]
        ret[:, log_inds] = np.exp(ret[:, log_inds])
        disc = [(i, d) for i, d in zip(numerical, numerical_dists, strict=True) if d.step != 0.0]
        disc_inds = [i for i, _ in disc]
        step_d = np.asarray([d.step for _, d in disc])
        low_d = np.asarray([d.low for _, d in disc])
        high_d = np.asarray([d.high for _, d in disc])
        ret[:, disc_inds] = np.clip(low_d + np.round((ret[:, disc_inds] - low_d) / step_d) * step_d, low_d, high_d)
    return [(state, ret[j * size : (j + 1) * size]) for j, state in enumerate(states)]


def _ppf(q: np.ndarray, a: np.ndarray, b: np.ndarray, ask: np.ndarray, count: int) -> np.ndarray:
    """Optuna's `_truncnorm.ppf`, each ask's elements as its own call."""
    case_left = a < 0
    case_right = ~case_left
    log_mass = log_gauss_mass_small(a.ravel(), b.ravel()).reshape(a.shape)
    out = np.empty_like(q)
    if (q_left := q[case_left]).size:
        log_phi = _truncnorm._log_sum(_truncnorm._log_ndtr(a[case_left]), np.log(q_left) + log_mass[case_left])
        out[case_left] = _ndtri_exp(log_phi, ask[case_left], count)
    if (q_right := q[case_right]).size:
        log_phi = _truncnorm._log_sum(_truncnorm._log_ndtr(-b[case_right]), np.log1p(-q_right) + log_mass[case_right])
        out[case_right] = -_ndtri_exp(log_phi, ask[case_right], count)
    out[q == 0] = a[q == 0]
    out[q == 1] = b[q == 1]
    out[a == b] = np.nan
    return out


def _ndtri_exp(y: np.ndarray, group: np.ndarray, groups: int) -> np.ndarray:
    """Optuna's `_truncnorm._ndtri_exp` for each group of `y` as its own call: a group's Newton
    steps stop once all of its elements have converged (Optuna's test, after the step)."""
    flipped = y > -1e-2
    z = y.copy()
    z[flipped] = np.log(-np.expm1(y[flipped]))
    x = np.empty_like(y)
    if (small_inds := np.nonzero(z < -5))[0].size:
        x[small_inds] = -np.sqrt(-2.0 * (z[small_inds] + _truncnorm._norm_pdf_logC))
    if (moderate_inds := np.nonzero(z >= -5))[0].size:
        x[moderate_inds] = -_truncnorm._ndtri_exp_approx_C * np.log(np.expm1(-z[moderate_inds]))
    live = np.arange(len(y))
    for _ in range(100):
        xs = x[live]
        log_ndtr_x = _truncnorm._log_ndtr(xs)
        log_norm_pdf_x = -0.5 * xs**2 - _truncnorm._norm_pdf_logC
        dx = (log_ndtr_x - z[live]) * np.exp(log_ndtr_x - log_norm_pdf_x)
        xs -= dx
        x[live] = xs
        unconverged = ~(np.abs(dx) < 1e-8 * np.abs(xs))
        going = np.bincount(group[live], weights=unconverged, minlength=groups) > 0
        live = live[going[group[live]]]
        if not len(live):
            break
    x[flipped] *= -1
    return x
