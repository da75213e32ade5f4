"""MixtureDensity (kubetrader.optimize.tpe_density) gives Optuna's TPE mixture densities to the last
bit, as Optuna's `log_pdf` gives them one ask's candidates at a time, while it keeps the discrete
parameters' masses from call to call; and the Optuna internals it relies on are still as it
assumes (these tests fail on a layout or formula change)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers._tpe import _erf
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator

from kubetrader.optimize.samplers import vectorized_tpe_log_ndtr
from kubetrader.optimize.tpe_density import ERF_SMALL_ARRAY, MixtureDensity, ParzenEstimator

SPACES: list[dict[str, Any]] = [
    {"fast": IntDistribution(2, 200), "slow": IntDistribution(5, 400)},  # the bench's space
    {"n": IntDistribution(1, 1000, log=True), "s": FloatDistribution(0, 1, step=0.25), "x": IntDistribution(-5, 5)},
    {
        "x": IntDistribution(2, 200, step=3),
        "y": FloatDistribution(1e-3, 10, log=True),
        "u": FloatDistribution(-5, 5),
        "c": CategoricalDistribution(["a", "b", "z"]),
    },
]


def observations(space: dict[str, Any], count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Internal values clustered round one point (many ties for the discrete parameters), some at the bounds."""
    found = {}
    for name, d in space.items():
        if isinstance(d, CategoricalDistribution):
            found[name] = rng.integers(0, len(d.choices), count).astype(float)
            continue
        centre = d.low + (d.high - d.low) * rng.uniform(0.2, 0.8)
        values = np.clip(rng.normal(centre, (d.high - d.low) / 6, count), d.low, d.high)
        if d.step is not None:
            values = d.low + np.round((values - d.low) / d.step) * d.step
        found[name] = values
    return found


def optunas(mpe: _ParzenEstimator, samples: dict[str, np.ndarray], block: int) -> np.ndarray:
    """Optuna's own densities, one ask's candidates per call (sequential asks)."""
    n = len(next(iter(samples.values())))
    return np.concatenate(
        [mpe.log_pdf({k: v[lo : lo + block] for k, v in samples.items()}) for lo in range(0, n, block)]
    )


@pytest.mark.parametrize("space_index", range(len(SPACES)))
def test_the_density_is_optunas_to_the_last_bit_call_after_call(space_index: int) -> None:
    """Estimators of 0 to 3,000 trials, one after another on one MixtureDensity (its tables
    growing, kernels coming and going as the constant liar's running trials do), candidates of one
    ask and of a 50-ask round: every value equals Optuna's bit for bit."""
    vectorized_tpe_log_ndtr()
    space = SPACES[space_index]
    parameters = optuna.samplers.TPESampler(multivariate=True)._parzen_estimator_parameters
    rng = np.random.default_rng(space_index)
    density = MixtureDensity()
    compared = 0
    base = observations(space, 3000, rng)
    for count in (0, 1, 2, 7, 30, 120, 600, 601, 650, 3000):
        for extra in (0, 5, 49):  # the round's finished trials plus its running ones
            obs = {k: np.concatenate([v[:count], observations(space, extra, rng)[k]]) for k, v in base.items()}
            mpe = _ParzenEstimator(obs, space, parameters)
            for asks in (1, 50):
                samples = mpe.sample(np.random.RandomState(count + extra + asks), 24 * asks)
                ours = density.log_pdf(mpe._mixture_distribution, mpe._transform(samples), 24)
                theirs = optunas(mpe, samples, 24)
                assert ours.shape == theirs.shape
                assert np.array_equal(ours, theirs), (count, extra, asks)
                compared += len(ours)
    assert compared > 10_000


def test_a_call_whose_kernels_would_take_optunas_other_erf_goes_to_optunas_own_log_pdf() -> None:
    """2,000 distinct kernels or more: Optuna computes their masses with its NumPy erf, which
    differs from math.erf in the last bit; the density hands such a call to Optuna, ask by ask."""
    vectorized_tpe_log_ndtr()
    space = {"x": IntDistribution(0, 1_000_000)}
    parameters = optuna.samplers.TPESampler(multivariate=True)._parzen_estimator_parameters
    rng = np.random.default_rng(1)
    mpe = _ParzenEstimator({"x": rng.integers(0, 1_000_000, 2500).astype(float)}, space, parameters)
    samples = mpe.sample(np.random.RandomState(1), 48)
    density = MixtureDensity()
    ours = density.log_pdf(mpe._mixture_distribution, mpe._transform(samples), 24)
    assert np.array_equal(ours, optunas(mpe, samples, 24))
    assert density.fallbacks == 1


def test_optunas_erf_is_math_erf_below_the_size_the_density_assumes() -> None:
    """The density computes masses in calls of fewer than ERF_SMALL_ARRAY elements, where Optuna's
    `_erf.erf` is `math.erf` element by element (optuna/samplers/_tpe/_erf.py): fails if a release
    moves that bound down or changes the small-array path."""
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(-7, 7, ERF_SMALL_ARRAY - 12), rng.normal(0, 1e-3, 10), [0.0]])
    assert len(x) == ERF_SMALL_ARRAY - 1
    assert np.array_equal(_erf.erf(x), np.array([math.erf(v) for v in x]))


@pytest.mark.parametrize("consider_endpoints", [False, True])
def test_the_estimators_kernels_are_optunas(consider_endpoints: bool) -> None:
    """ParzenEstimator (its sigmas unsorted by a scatter) builds Optuna's kernels and weights exactly,
    over ties, bounds and every kind of parameter, from 0 to 3,000 observations."""
    rng = np.random.default_rng(4)
    parameters = optuna.samplers.TPESampler(multivariate=True)._parzen_estimator_parameters._replace(
        consider_endpoints=consider_endpoints  # the sampler's argument is deprecated, the estimator's is not
    )
    for space in SPACES:
        for count in (0, 1, 2, 3, 26, 300, 3000):
            obs = observations(space, count, rng)
            ours, theirs = ParzenEstimator(obs, space, parameters), _ParzenEstimator(obs, space, parameters)
            mine, optunas_ = ours._mixture_distribution, theirs._mixture_distribution
            assert np.array_equal(mine.weights, optunas_.weights)
            for a, b in zip(mine.distributions, optunas_.distributions, strict=True):
                assert type(a) is type(b)
                assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)), (space, count)
