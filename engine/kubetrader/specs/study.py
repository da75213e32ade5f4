"""The `OptimizationStudy` spec: a Backtest template, a parameter space and an objective."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from kubetrader.specs.backtest import BacktestSpec
from kubetrader.specs.common import Scalar, SpecModel, did_you_mean
from kubetrader.specs.limits import (
    MAX_CHOICES,
    MAX_CONSTRAINT_LENGTH,
    MAX_CONSTRAINTS,
    MAX_GRID_POINTS,
    MAX_PARAM_VALUES,
    MAX_SPACE_PARAMS,
    PARAM_BOUND,
)
from kubetrader.specs.metrics import METRIC_NAMES


def _check_values(count: int) -> None:
    if count > MAX_PARAM_VALUES:
        raise ValueError(
            f"(high - low) / step + 1 is {count} values; at most {MAX_PARAM_VALUES} are allowed (raise the step)"
        )


class IntParam(SpecModel):
    type: Literal["int"]
    low: int = Field(ge=-PARAM_BOUND, le=PARAM_BOUND)
    high: int = Field(ge=-PARAM_BOUND, le=PARAM_BOUND)
    step: int = Field(default=1, ge=1, le=PARAM_BOUND)
    log: bool = False

    @property
    def count(self) -> int:
        """How many values it takes on a grid, counted (never listed)."""
        return (self.high - self.low) // self.step + 1

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must not be below low ({self.low})")
        if self.log and self.low <= 0:
            raise ValueError("log scale needs low > 0")
        _check_values(self.count)
        return self


class FloatParam(SpecModel):
    type: Literal["float"]
    low: float = Field(ge=-PARAM_BOUND, le=PARAM_BOUND)
    high: float = Field(ge=-PARAM_BOUND, le=PARAM_BOUND)
    step: float | None = Field(default=None, gt=0)
    log: bool = False

    @property
    def count(self) -> int | None:
        """Values on a grid (None without a step: continuous)."""
        if self.step is None:
            return None
        return math.floor((self.high - self.low) / self.step + 1e-9) + 1

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must not be below low ({self.low})")
        if self.log and self.low <= 0:
            raise ValueError("log scale needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("step and log cannot be combined")
        if self.count is not None:
            _check_values(self.count)
        return self


class CategoricalParam(SpecModel):
    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1, max_length=MAX_CHOICES)

    @property
    def count(self) -> int:
        return len(self.choices)


ParamDef = Annotated[IntParam | FloatParam | CategoricalParam, Field(discriminator="type")]


class ObjectiveSpec(SpecModel):
    metric: str = "sharpe_ratio"
    direction: Literal["maximize", "minimize"] = "maximize"

    @model_validator(mode="after")
    def _known_metric(self) -> ObjectiveSpec:
        if self.metric not in METRIC_NAMES:
            hint = did_you_mean(self.metric, METRIC_NAMES)
            raise ValueError(f"unknown metric {self.metric!r}{hint}")
        return self


class SamplerSpec(SpecModel):
    type: Literal["tpe", "random", "grid", "cmaes"] = "tpe"
    seed: int | None = None
    startup_trials: int = Field(default=10, ge=0, description="TPE: random trials before modelling.")
    multivariate: bool = Field(default=True, description="TPE: model parameters jointly.")
    constant_liar: bool = Field(default=True, description="TPE: avoid proposing running trials twice.")
    batch_size: int = Field(
        default=8,
        ge=1,
        le=1000,
        description="With a seed: trials are asked in batches of this size and told in trial order once the "
        "whole batch is back, so the same seed gives the same trials at any parallelism (which can use at most "
        "this many workers at once: raise it with the worker pool).",
    )


class WalkForwardSpec(SpecModel):
    """Rolling or anchored in-sample / out-of-sample windows, in trading days."""

    in_sample: int = Field(ge=20, description="Bars in each in-sample window.")
    out_of_sample: int = Field(ge=5, description="Bars in each out-of-sample window.")
    anchored: bool = Field(default=False, description="In-sample windows all start at the data's start.")
    trials_per_window: int | None = Field(default=None, ge=1)


class ValidationSpec(SpecModel):
    walk_forward: WalkForwardSpec | None = None


class OptimizationStudySpec(SpecModel):
    backtest: BacktestSpec = Field(description="The Backtest every trial runs, with the trial's params merged in.")
    space: dict[str, ParamDef] = Field(min_length=1, max_length=MAX_SPACE_PARAMS)
    constraints: list[Annotated[str, Field(max_length=MAX_CONSTRAINT_LENGTH)]] = Field(
        default_factory=list,
        max_length=MAX_CONSTRAINTS,
        description="Expressions over the parameters, e.g. 'fast < slow'.",
    )
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    trials: int = Field(default=100, ge=1, le=100_000)
    parallelism: int = Field(default=1, ge=1, le=1000)
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: Literal["none"] = Field(
        default="none",
        description="Only `none`: trials run whole on the worker pool and report no intermediate values, so a "
        "median pruner would have nothing to prune on; `median` is refused rather than silently ignored.",
    )
    resume: bool = Field(default=True, description="Reuse trials of a study with the same name.")
    study_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    screen: Literal["none", "vectorized"] = Field(
        default="none", description="Screen with the strategy's vectorized twin, confirm the top K on Backtrader."
    )
    confirm_top: int = Field(default=10, ge=1, le=1000)
    validation: ValidationSpec | None = None

    @field_validator("pruner", mode="before")
    @classmethod
    def _no_silent_pruner(cls, value: Any) -> Any:
        """Say why `median` is refused (a bare Literal would only say "should be 'none'"). The field's
        only value is `none`, so the CRD's enum lists only it and kubectl refuses `median` at apply."""
        if isinstance(value, str) and value != "none":
            raise ValueError(
                f"{value!r} is not supported: trials run whole on the worker pool and report no intermediate "
                "values to prune on; use 'none'"
            )
        return value

    @model_validator(mode="after")
    def _parallelism_within_trials(self) -> OptimizationStudySpec:
        if self.parallelism > self.trials:
            raise ValueError(f"parallelism ({self.parallelism}) must not exceed trials ({self.trials})")
        if self.backtest.matrix is not None:
            raise ValueError("backtest.matrix cannot be used in a study (the space is the matrix)")
        if self.sampler.type == "grid":
            size = grid_points(self.space)
            if size is None:
                raise ValueError("sampler 'grid' needs a step on every float parameter")
            if size > MAX_GRID_POINTS:
                raise ValueError(f"the grid has {size} points; sampler 'grid' takes at most {MAX_GRID_POINTS}")
        return self


def grid_points(space: dict[str, ParamDef]) -> int | None:
    """The number of grid points, counted without listing one (None: a float without a step)."""
    size = 1
    for definition in space.values():
        count = definition.count
        if count is None:
            return None
        size *= count
    return size
