"""CustomResourceDefinition builders: spec and status schemas from the models, plus CEL rules.

Everything the models say (types, enums, ranges, patterns, defaults, required)
comes from `schema.model_schema`; what needs more than one field (end after
start, immutability, live risk limits, parallelism within trials) is a CEL rule
here, so the API server rejects it at `kubectl apply` time with a readable message.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from kubetrader.specs import API_GROUP, API_VERSION, BacktestSpec, LiveDeploymentSpec, OptimizationStudySpec
from kubetrader.specs.limits import MAX_PARAM_VALUES
from kubetrader.specs.live import LIVE_REQUIRED_LIMITS
from kubetrader_operator.crdgen.schema import Schema, model_schema
from kubetrader_operator.crdgen.status import BacktestStatus, LiveDeploymentStatus, OptimizationStudyStatus
from kubetrader_operator.labels import LABEL_VALUE_MAX

CATEGORY = "kubetrader"
IMMUTABLE_MESSAGE = "spec is immutable: create a new Backtest"
# A study's driver runs the spec it was started with; an edit would be ignored while status went on
# reporting the old trials, so it is refused (kubectl apply shows this message).
STUDY_IMMUTABLE_MESSAGE = "spec is immutable: create a new OptimizationStudy"
END_AFTER_START_MESSAGE = "data.end must be after data.start"
LIVE_LIMITS_MESSAGE = "mode 'live' needs every risk limit: " + ", ".join(
    "".join(w.capitalize() if i else w for i, w in enumerate(name.split("_"))) for name in LIVE_REQUIRED_LIMITS
)
PARALLELISM_MESSAGE = "parallelism must not exceed trials"
PARAM_VALUES_MESSAGE = f"(high - low) / step + 1 must be at most {MAX_PARAM_VALUES} values (raise the step)"
# One parameter's grid values, as kubetrader.specs.study counts them (a float without a step is continuous).
# `double()` on both sides: the merged int/float schema types low/high as `number` (a double in the
# API server's CEL), and an int in a stand-in's; the arithmetic is the same either way.
PARAM_VALUES_RULE = (
    "self.type == 'categorical' || (self.type == 'float' && !has(self.step)) || "
    "(double(self.high) - double(self.low)) / (has(self.step) ? double(self.step) : 1.0) "
    f"< {float(MAX_PARAM_VALUES)}"
)
NAME_MAX = LABEL_VALUE_MAX  # a name is a label value on the children
CUSTOM_COMMISSION_MESSAGE = "commission model 'custom' needs perShare or percent"


LIVE_PROMOTION_MESSAGE = "mode 'live' needs spec.promotion.fromBacktest: a Succeeded Backtest of the same strategy"
GATEWAY_IMMUTABLE_MESSAGE = (
    "spec.gateway is immutable: another account, image, port or client id is a new LiveDeployment"
)
SYMBOLS_KEPT_MESSAGE = (
    "spec.symbols may gain symbols, not lose them: a removed symbol's position would have no owner "
    "(stop it with a new LiveDeployment)"
)
MODE_IMMUTABLE_MESSAGE = "spec.mode is immutable: paper <-> live needs a new LiveDeployment"


def name_message(kind: str) -> str:
    return (
        f"metadata.name must be no more than {NAME_MAX} characters: "
        f"a {kind}'s name is the value of a label on its children"
    )


def name_rule(kind: str) -> dict[str, str]:
    """Names that fit a label value (63 characters), which the engine's own files require too.

    Kubernetes allows 253; a longer name would be refused on the children's labels (422) after
    the resource was created. Refusing it at apply time says so where the user can fix it. Only
    the root of a CRD schema sees `metadata.name`, so the rule sits there.
    """
    return _rule(f"size(self.metadata.name) <= {NAME_MAX}", name_message(kind))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    short_name: str
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    columns: tuple[dict[str, Any], ...]


def _rule(rule: str, message: str, **extra: str) -> dict[str, str]:
    return {"rule": rule, "message": message, **extra}


def _add_rules(node: Schema, *rules: dict[str, str]) -> None:
    node.setdefault("x-kubernetes-validations", []).extend(rules)


def _data_rules(data: Schema) -> None:
    # ISO dates compare correctly as strings, and as timestamps when the server maps `format: date`.
    _add_rules(
        data, _rule("self.end > self.start", END_AFTER_START_MESSAGE, fieldPath=".end", reason="FieldValueInvalid")
    )
    data["properties"]["symbols"]["x-kubernetes-list-type"] = "set"  # no symbol twice


def _commission_rules(commission: Schema) -> None:
    _add_rules(
        commission,
        _rule(
            "!has(self.model) || self.model != 'custom' || has(self.perShare) || has(self.percent)",
            CUSTOM_COMMISSION_MESSAGE,
        ),
    )


def _backtest_schema(spec: Schema) -> None:
    _data_rules(spec["properties"]["data"])
    _commission_rules(spec["properties"]["broker"]["properties"]["commission"])


def backtest_spec_schema() -> Schema:
    spec = model_schema(BacktestSpec)
    _backtest_schema(spec)
    _add_rules(spec, _rule("self == oldSelf", IMMUTABLE_MESSAGE))
    return spec


def study_spec_schema() -> Schema:
    spec = model_schema(OptimizationStudySpec)
    _backtest_schema(spec["properties"]["backtest"])
    _add_rules(spec, _rule("self == oldSelf", STUDY_IMMUTABLE_MESSAGE))
    # Per parameter (a CEL rule sees one map value); the grid's product over the parameters needs a
    # fold CEL does not have, so the models check it (kubetrader.specs.limits).
    _add_rules(spec["properties"]["space"]["additionalProperties"], _rule(PARAM_VALUES_RULE, PARAM_VALUES_MESSAGE))
    # Defaults are written out so the rule holds whether or not the server defaulted first.
    _add_rules(
        spec,
        _rule(
            "(has(self.parallelism) ? self.parallelism : 1) <= (has(self.trials) ? self.trials : 100)",
            PARALLELISM_MESSAGE,
            fieldPath=".parallelism",
        ),
    )
    return spec


def live_spec_schema() -> Schema:
    spec = model_schema(LiveDeploymentSpec)
    limits = " && ".join(f"has(self.risk.{_camel(name)})" for name in LIVE_REQUIRED_LIMITS)
    rule = f"!has(self.mode) || self.mode != 'live' || ({limits})"
    _add_rules(spec, _rule(rule, LIVE_LIMITS_MESSAGE, fieldPath=".risk"))
    # Real money needs a promotion from a Backtest (the operator checks that it matches), and
    # paper <-> live is a new resource, never an edit of a running one.
    _add_rules(
        spec,
        _rule("!has(self.mode) || self.mode != 'live' || has(self.promotion)", LIVE_PROMOTION_MESSAGE,
              fieldPath=".promotion", reason="FieldValueRequired"),
        _rule("(has(self.mode) ? self.mode : 'paper') == (has(oldSelf.mode) ? oldSelf.mode : 'paper')",
              MODE_IMMUTABLE_MESSAGE, fieldPath=".mode"),
    )  # fmt: skip
    # Other edits roll the runner (kubetrader_operator.live.handlers.roll_runner); these would not be safe.
    _add_rules(spec["properties"]["gateway"], _rule("self == oldSelf", GATEWAY_IMMUTABLE_MESSAGE))
    _add_rules(spec["properties"]["symbols"], _rule("oldSelf.all(s, s in self)", SYMBOLS_KEPT_MESSAGE))
    return spec


def status_schema(model: type[BaseModel]) -> Schema:
    status = model_schema(model)
    conditions = status["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    conditions.pop("default", None)
    return status


def _column(name: str, path: str, type_: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "jsonPath": path, **extra}


_AGE = _column("Age", ".metadata.creationTimestamp", "date")

KINDS: dict[str, KindInfo] = {
    "Backtest": KindInfo(
        "Backtest",
        "backtests",
        "bt",
        BacktestSpec,
        BacktestStatus,
        (
            _column("Strategy", ".spec.strategy.path"),
            _column("Symbols", ".spec.data.symbols"),
            _column("Phase", ".status.phase"),
            _column("Sharpe", ".status.metrics.sharpeRatio", "number", format="float"),
            _column("Return", ".status.metrics.totalReturn", "number", format="float"),
            _column("MaxDD", ".status.metrics.maxDrawdown", "number", format="float"),
            _AGE,
        ),
    ),
    "OptimizationStudy": KindInfo(
        "OptimizationStudy",
        "optimizationstudies",
        "study",
        OptimizationStudySpec,
        OptimizationStudyStatus,
        (
            _column("Objective", ".status.objective"),  # spec.objective may be omitted (defaulted by the model)
            _column("Best", ".status.bestValue", "number", format="float"),
            _column("Trials", ".status.trialsDone", "integer"),
            _column("Phase", ".status.phase"),
            _AGE,
        ),
    ),
    "LiveDeployment": KindInfo(
        "LiveDeployment",
        "livedeployments",
        "live",
        LiveDeploymentSpec,
        LiveDeploymentStatus,
        (
            _column("Mode", ".spec.mode"),
            _column("Symbols", ".spec.symbols"),
            _column("Phase", ".status.phase"),
            _column("Connected", ".status.connected", "boolean"),
            _column("PnL", ".status.pnl", "number", format="float"),
            _AGE,
        ),
    ),
}

_SPEC_SCHEMAS = {
    "Backtest": backtest_spec_schema,
    "OptimizationStudy": study_spec_schema,
    "LiveDeployment": live_spec_schema,
}


SCHEMA_HASH_ANNOTATION = f"{API_GROUP}/schema-sha256"


def build_crd(kind: str) -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of one kind.

    Its `kubetrader.io/schema-sha256` annotation is a hash of the spec: the chart compares it with
    the CRD in the cluster and refuses to install over a stale one (Helm never upgrades CRDs).
    """
    spec = _crd_spec(kind)
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{KINDS[kind].plural}.{API_GROUP}", "annotations": {SCHEMA_HASH_ANNOTATION: digest}},
        "spec": spec,
    }


def _crd_spec(kind: str) -> dict[str, Any]:
    info = KINDS[kind]
    return {
        "group": API_GROUP,
        "scope": "Namespaced",
        "names": {
            "kind": info.kind,
            "listKind": f"{info.kind}List",
            "plural": info.plural,
            "singular": info.kind.lower(),
            "shortNames": [info.short_name],
            "categories": [CATEGORY],
        },
        "versions": [
            {
                "name": API_VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": list(info.columns),
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "description": (info.spec_model.__doc__ or info.kind).strip().splitlines()[0],
                        "required": ["spec"],
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": _SPEC_SCHEMAS[kind](),
                            "status": status_schema(info.status_model),
                        },
                        "x-kubernetes-validations": [name_rule(info.kind)],
                    }
                },
            }
        ],
    }


def crd_filename(kind: str) -> str:
    return f"{KINDS[kind].plural}.yaml"
