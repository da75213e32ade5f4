"""The `spec` models of the three custom resources: the single source of truth.

The CRD schemas in `crds/` are generated from these models, the operator and the
API validate with them, and the engine's entry point takes the same objects, so a
YAML file means the same thing under `kubetrader run -f` and under `kubectl apply`.

Only pydantic and the standard library may be imported here (an import-linter
contract checks it), so the operator and the dashboard can use the models without
pulling in Backtrader, pandas or MLflow.

Each name loads its module on first use (PEP 562): a Backtest run builds the Backtest models only,
not the study's and the live deployment's (their classes cost start-up on every Job).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubetrader.specs.backtest import (
        BacktestSpec,
        BrokerSpec,
        CommissionSpec,
        DataSpec,
        MatrixSpec,
        RiskSpec,
        SlippageSpec,
        StrategySpec,
        TrackingSpec,
    )
    from kubetrader.specs.common import API_GROUP, API_VERSION, GROUP_VERSION, SpecModel
    from kubetrader.specs.live import GatewaySpec, LiveDeploymentSpec, PromotionSpec, StopPolicySpec
    from kubetrader.specs.matrix import expand_matrix, spec_hash
    from kubetrader.specs.metrics import HEADLINE_METRICS, METRIC_NAMES
    from kubetrader.specs.resources import KINDS, Resource, kind_model, parse_resource
    from kubetrader.specs.status import Condition, ConditionType, Phase
    from kubetrader.specs.study import (
        CategoricalParam,
        FloatParam,
        IntParam,
        ObjectiveSpec,
        OptimizationStudySpec,
        ParamDef,
        SamplerSpec,
        ValidationSpec,
        WalkForwardSpec,
    )

_MODULES: dict[str, tuple[str, ...]] = {
    "backtest": (
        "BacktestSpec",
        "BrokerSpec",
        "CommissionSpec",
        "DataSpec",
        "MatrixSpec",
        "RiskSpec",
        "SlippageSpec",
        "StrategySpec",
        "TrackingSpec",
    ),
    "common": ("API_GROUP", "API_VERSION", "GROUP_VERSION", "SpecModel"),
    "live": ("GatewaySpec", "LiveDeploymentSpec", "PromotionSpec", "StopPolicySpec"),
    "matrix": ("expand_matrix", "spec_hash"),
    "metrics": ("HEADLINE_METRICS", "METRIC_NAMES"),
    "resources": ("KINDS", "Resource", "kind_model", "parse_resource"),
    "status": ("Condition", "ConditionType", "Phase"),
    "study": (
        "CategoricalParam",
        "FloatParam",
        "IntParam",
        "ObjectiveSpec",
        "OptimizationStudySpec",
        "ParamDef",
        "SamplerSpec",
        "ValidationSpec",
        "WalkForwardSpec",
    ),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _MODULES:  # `specs.live`, as when this package imported every module
        return importlib.import_module(f"{__name__}.{name}")
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # once: later lookups are plain module attributes
    return value


__all__ = [
    "API_GROUP",
    "API_VERSION",
    "GROUP_VERSION",
    "HEADLINE_METRICS",
    "KINDS",
    "METRIC_NAMES",
    "BacktestSpec",
    "BrokerSpec",
    "CategoricalParam",
    "CommissionSpec",
    "Condition",
    "ConditionType",
    "DataSpec",
    "FloatParam",
    "GatewaySpec",
    "IntParam",
    "LiveDeploymentSpec",
    "MatrixSpec",
    "ObjectiveSpec",
    "OptimizationStudySpec",
    "ParamDef",
    "Phase",
    "PromotionSpec",
    "Resource",
    "RiskSpec",
    "SamplerSpec",
    "SlippageSpec",
    "SpecModel",
    "StopPolicySpec",
    "StrategySpec",
    "TrackingSpec",
    "ValidationSpec",
    "WalkForwardSpec",
    "expand_matrix",
    "kind_model",
    "parse_resource",
    "spec_hash",
]
