"""The `OptimizationStudy` spec: a Backtest template, a parameter space and an objective."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from kubetrader.specs.backtest import BacktestSpec
from kubetrader.specs.common import Scalar, SpecModel, did_you_mean
from kubetrader.specs.metrics import METRIC_NAMES


class IntParam(SpecModel):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(default=1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must not be below low ({self.low})")
        if self.log and self.low <= 0:
            raise ValueError("log scale needs low > 0")
        return self


class FloatParam(SpecModel):
    type: Literal["float"]
    low: float
    high: float
    step: float | None = Field(default=None, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must not be below low ({self.low})")
        if self.log and self.low <= 0:
            raise ValueError("log scale needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("step and log cannot be combined")
        return self


class CategoricalParam(SpecModel):
    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1)


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
    space: dict[str, ParamDef] = Field(min_length=1)
    constraints: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, description="Expressions over the parameters, e.g. 'fast < slow'."
    )
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    trials: int = Field(default=100, ge=1, le=100_000)
    parallelism: int = Field(default=1, ge=1, le=1000)
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: Literal["none", "median"] = Field(
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

    @field_validator("pruner")
    @classmethod
    def _no_silent_pruner(cls, value: str) -> str:
        if value != "none":
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
        return self
