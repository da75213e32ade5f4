"""draw_asks (kubetrader.optimize.tpe_draws) draws a round's candidates as Optuna's sampler draws
them ask after ask: the same values to the last bit and the RNG left in the same state."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator

from kubetrader.optimize.samplers import vectorized_tpe_log_ndtr
from kubetrader.optimize.tpe_draws import draw_asks
from tests.optimize.test_tpe_density import SPACES, observations


@pytest.mark.parametrize("space_index", range(len(SPACES)))
def test_a_rounds_draws_are_optunas_ask_after_ask(space_index: int) -> None:
    vectorized_tpe_log_ndtr()
    space = SPACES[space_index]
    parameters = optuna.samplers.TPESampler(multivariate=True)._parzen_estimator_parameters
    rng = np.random.default_rng(10 + space_index)
    for count in (0, 1, 3, 26):  # the good trials' estimator holds up to 25 trials and the prior
        mpe = _ParzenEstimator(observations(space, count, rng), space, parameters)
        mixture = mpe._mixture_distribution
        for seed, asks in ((count, 1), (count + 1, 50)):
            ours_rng, their_rng = np.random.RandomState(seed), np.random.RandomState(seed)
            ours = draw_asks(mixture, ours_rng, 24, asks)
            assert len(ours) == asks
            for state, samples in ours:
                before = their_rng.get_state()
                assert all(np.array_equal(x, y) for x, y in zip(state, before, strict=True))
                assert np.array_equal(samples, mixture.sample(their_rng, 24)), (count, asks)
            assert np.array_equal(ours_rng.get_state()[1], their_rng.get_state()[1])


def test_draws_of_many_parameters_are_optunas_own_calls() -> None:
    """84 numerical parameters x 24 candidates reach Optuna's erf size bound: Optuna's own sample."""
    vectorized_tpe_log_ndtr()
    space = {f"p{i}": optuna.distributions.FloatDistribution(0, 1) for i in range(84)}
    parameters = optuna.samplers.TPESampler(multivariate=True)._parzen_estimator_parameters
    mpe = _ParzenEstimator(observations(space, 5, np.random.default_rng(3)), space, parameters)
    ours = draw_asks(mpe._mixture_distribution, np.random.RandomState(1), 24, 2)
    theirs = np.random.RandomState(1)
    assert all(np.array_equal(s, mpe._mixture_distribution.sample(theirs, 24)) for _, s in ours)
