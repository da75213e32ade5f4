"""The `spec` models of the three custom resources: the single source of truth.

The CRD schemas in `crds/` are generated from these models, the operator and the
API validate with them, and the engine's entry point takes the same objects, so a
YAML file means the same thing under `kubetrader run -f` and under `kubectl apply`.

Only pydantic and the standard library may be imported here (an import-linter
contract checks it), so the operator and the dashboard can use the models without
pulling in Backtrader, pandas or MLflow.
"""

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
from kubetrader.specs.resources import KIND_MODELS, Resource, parse_resource
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

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "GROUP_VERSION",
    "HEADLINE_METRICS",
    "KIND_MODELS",
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
    "parse_resource",
    "spec_hash",
]
