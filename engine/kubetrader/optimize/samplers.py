"""Sampler adaptations for ask/tell studies (the driver, not `study.optimize`, runs the loop)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna


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
