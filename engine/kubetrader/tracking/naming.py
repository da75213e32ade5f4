"""Experiment names and the tag keys the platform writes and queries by.

Pure: no MLflow import. The experiment hierarchy is encoded twice on purpose:
in the experiment name (what a person reads in the MLflow UI) and as tags on
both the experiment and each run (what queries filter on, server-side, without
parsing names).
"""

from __future__ import annotations

from dataclasses import dataclass

# Tag keys. Level tags are plain words so filter strings stay readable:
#   tags.project = 'Q1_2025' AND tags.asset_class = 'Equities'
PROJECT = "project"
ASSET_CLASS = "asset_class"
STRATEGY_FAMILY = "strategy_family"
STRATEGY = "strategy"
LEVEL_TAGS: tuple[str, ...] = (PROJECT, ASSET_CLASS, STRATEGY_FAMILY, STRATEGY)

SYMBOLS = "symbols"
STATUS = "status"  # the backtest's status (succeeded / failed), not MLflow's run status
PACKAGE_VERSION = "package_version"
BACKTRADER_VERSION = "backtrader_version"
DATA_HASH = "data_hash"
SPEC_HASH = "spec_hash"
RESULT_ID = "result_id"
ERROR = "error"
KIND = "kubetrader.kind"  # backtest | study | trial | run
MANAGED = "kubetrader.managed"  # on experiments the platform created: lets queries skip foreign ones
BEST_TRIAL = "best_trial"
RUN_NAME = "mlflow.runName"
PARENT_RUN_ID = "mlflow.parentRunId"

# Run statuses, as MLflow spells them.
RUN_STATUSES: tuple[str, ...] = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")


@dataclass(frozen=True)
class ExperimentPath:
    """Where a run lives: Project.AssetClass.StrategyFamily.Strategy."""

    project: str
    asset_class: str
    strategy_family: str
    strategy: str

    @property
    def name(self) -> str:
        return ".".join((self.project, self.asset_class, self.strategy_family, self.strategy))

    def tags(self) -> dict[str, str]:
        return {
            PROJECT: self.project,
            ASSET_CLASS: self.asset_class,
            STRATEGY_FAMILY: self.strategy_family,
            STRATEGY: self.strategy,
        }

    @classmethod
    def parse(cls, name: str) -> ExperimentPath:
        """The inverse of `name`; refuses names that are not four dotted levels."""
        parts = name.split(".")
        if len(parts) != 4 or not all(parts):
            raise ValueError(f"experiment name {name!r} is not Project.AssetClass.StrategyFamily.Strategy")
        return cls(*parts)


def strategy_name(import_path: str) -> str:
    """`strategies.sma_crossover.SMACrossover` -> `SMACrossover` (the class name)."""
    return import_path.rsplit(".", 1)[-1]


def quote(value: str) -> str:
    """A string literal for an MLflow filter string (single quotes, escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
