"""The CRDs: generated from the spec models, structural, and as strict as the models."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kubetrader_operator.crdgen import KINDS, crd_filename, render_crd
from kubetrader_operator.crdgen.crds import (
    CUSTOM_COMMISSION_MESSAGE,
    END_AFTER_START_MESSAGE,
    IMMUTABLE_MESSAGE,
    LIVE_LIMITS_MESSAGE,
    PARALLELISM_MESSAGE,
    STUDY_IMMUTABLE_MESSAGE,
    name_message,
)
from tests.helpers import EXAMPLES, ROOT
from tests.kube.crd_validation import admit, load_crds, openapi_schema, preserved_paths, structural_problems

CRDS = load_crds()
EXAMPLE_FILES = sorted(p for p in EXAMPLES.glob("*.yaml") if p.name.startswith(("backtest-", "study-", "live-")))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_committed_crd_matches_what_the_spec_models_generate(kind: str) -> None:
    committed = (ROOT / "crds" / crd_filename(kind)).read_text()
    assert committed == render_crd(kind), f"crds/{crd_filename(kind)} is stale: run `make crds`"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_crd_validates_against_apiextensions_v1_strictly(kind: str) -> None:
    kubernetes_validate.validate(CRDS[kind], "1.37", strict=True)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_crd_schema_is_structural(kind: str) -> None:
    assert structural_problems(openapi_schema(CRDS[kind])) == []


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_unknown_fields_are_preserved_only_under_strategy_parameters(kind: str) -> None:
    allowed_suffixes = ("strategy.params", "matrix.params[*][]", "space[*].choices[]", "status.bestParams")
    for path in preserved_paths(openapi_schema(CRDS[kind])):
        assert path.endswith(allowed_suffixes), path


def test_backtest_crd_has_names_columns_and_status_subresource() -> None:
    spec = CRDS["Backtest"]["spec"]
    assert spec["names"]["shortNames"] == ["bt"]
    assert spec["names"]["categories"] == ["kubetrader"]
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Strategy", "Symbols", "Phase", "Sharpe", "Return", "MaxDD", "Age"]
    status = openapi_schema(CRDS["Backtest"])["properties"]["status"]["properties"]
    condition = status["conditions"]["items"]["properties"]
    assert set(condition) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
    assert {"phase", "startTime", "completionTime", "metrics", "resultPath", "mlflowRunId", "job"} <= set(status)


def test_study_and_live_crds_have_their_columns_and_short_names() -> None:
    study = CRDS["OptimizationStudy"]["spec"]
    live = CRDS["LiveDeployment"]["spec"]
    assert study["names"]["shortNames"] == ["study"]
    assert live["names"]["shortNames"] == ["live"]
    assert [c["name"] for c in study["versions"][0]["additionalPrinterColumns"]] == [
        "Objective",
        "Best",
        "Trials",
        "Phase",
        "Age",
    ]
    assert [c["name"] for c in live["versions"][0]["additionalPrinterColumns"]] == [
        "Mode",
        "Symbols",
        "Phase",
        "Connected",
        "PnL",
        "Age",
    ]


def test_study_param_union_is_one_object_with_a_discriminated_one_of() -> None:
    space = openapi_schema(CRDS["OptimizationStudy"])["properties"]["spec"]["properties"]["space"]
    param = space["additionalProperties"]
    assert param["type"] == "object"
    assert param["properties"]["type"]["enum"] == ["int", "float", "categorical"]
    assert [branch["properties"]["type"]["enum"] for branch in param["oneOf"]] == [["int"], ["float"], ["categorical"]]


def test_dates_enums_defaults_and_bounds_come_from_the_models() -> None:
    spec = openapi_schema(CRDS["Backtest"])["properties"]["spec"]["properties"]
    assert spec["data"]["properties"]["start"]["format"] == "date"
    assert spec["data"]["properties"]["timeframe"]["enum"] == ["1d", "1h", "5m", "1m"]
    assert spec["broker"]["properties"]["cash"] == {
        "default": 100000.0,
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
    }
    assert spec["data"]["required"] == ["symbols", "start", "end"]


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_resource_is_admitted_by_its_crd(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert admit(CRDS[doc["kind"]], doc) == []


def _example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text())


def _edit(name: str, change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(_example(name))
    change(doc["spec"])
    return doc


INVALID = [
    ("missing strategy", "backtest-sma.yaml", lambda s: s.pop("strategy"), "spec.strategy: Required value"),
    (
        "end before start",
        "backtest-sma.yaml",
        lambda s: s["data"].update(end="2004-01-01"),
        f"spec.data.end: Invalid value: {END_AFTER_START_MESSAGE}",
    ),
    (
        "end equals start",
        "backtest-sma.yaml",
        lambda s: s["data"].update(end="2005-01-01"),
        f"spec.data.end: Invalid value: {END_AFTER_START_MESSAGE}",
    ),
    (
        "unknown commission model",
        "backtest-sma.yaml",
        lambda s: s["broker"]["commission"].update(model="ib-free"),
        'spec.broker.commission.model: Unsupported value: "ib-free": '
        'supported values: "ib-standard", "ib-pro", "none", "custom"',
    ),
    (
        "custom commission without numbers",
        "backtest-sma.yaml",
        lambda s: s["broker"]["commission"].update(model="custom"),
        f"spec.broker.commission: Invalid value: {CUSTOM_COMMISSION_MESSAGE}",
    ),
    (
        "negative cash",
        "backtest-sma.yaml",
        lambda s: s["broker"].update(cash=-5),
        "spec.broker.cash: Invalid value: -5: spec.broker.cash in body should be greater than 0",
    ),
    (
        "zero cash",
        "backtest-sma.yaml",
        lambda s: s["broker"].update(cash=0),
        "spec.broker.cash: Invalid value: 0: spec.broker.cash in body should be greater than 0",
    ),
    (
        "not a date",
        "backtest-sma.yaml",
        lambda s: s["data"].update(start="2005-13-45"),
        'spec.data.start: Invalid value: "2005-13-45": spec.data.start in body must be of type date: "2005-13-45"',
    ),
    (
        "lowercase symbol",
        "backtest-sma.yaml",
        lambda s: s["data"].update(symbols=["orcl"]),
        'spec.data.symbols[0]: Invalid value: "orcl": spec.data.symbols[0] in body should match '
        "'^[A-Z0-9][A-Z0-9._-]{0,31}$'",
    ),
    (
        "no symbols",
        "backtest-sma.yaml",
        lambda s: s["data"].update(symbols=[]),
        "spec.data.symbols: Invalid value: 0: spec.data.symbols in body should have at least 1 items",
    ),
    (
        "unknown timeframe",
        "backtest-sma.yaml",
        lambda s: s["data"].update(timeframe="2d"),
        'spec.data.timeframe: Unsupported value: "2d": supported values: "1d", "1h", "5m", "1m"',
    ),
    (
        "strategy path not an import path",
        "backtest-sma.yaml",
        lambda s: s["strategy"].update(path="SMACrossover"),
        'spec.strategy.path: Invalid value: "SMACrossover": spec.strategy.path in body should match '
        "'^[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z_][A-Za-z0-9_]*)+$'",
    ),
    (
        "live without risk limits",
        "live-paper.yaml",
        lambda s: s.update(mode="live"),
        f"spec.risk: Invalid value: {LIVE_LIMITS_MESSAGE}",
    ),
    ("live with no risk at all", "live-paper.yaml", lambda s: s.pop("risk"), "spec.risk: Required value"),
    (
        "parallelism above trials",
        "study-sma.yaml",
        lambda s: s.update(parallelism=50),
        f"spec.parallelism: Invalid value: {PARALLELISM_MESSAGE}",
    ),
    (
        "parallelism above the default trials",
        "study-sma.yaml",
        lambda s: (s.pop("trials"), s.update(parallelism=101)),
        f"spec.parallelism: Invalid value: {PARALLELISM_MESSAGE}",
    ),
    (
        "unknown param type",
        "study-sma.yaml",
        lambda s: s["space"].update(x={"type": "bool"}),
        'spec.space.x.type: Unsupported value: "bool": supported values: "int", "float", "categorical"',
    ),
    (
        "categorical without choices",
        "study-sma.yaml",
        lambda s: s["space"].update(x={"type": "categorical"}),
        "spec.space.x.choices: Required value",
    ),
    (
        "empty space",
        "study-sma.yaml",
        lambda s: s.update(space={}),
        "spec.space: Invalid value: 0: spec.space in body should have at least 1 properties",
    ),
    (
        "unknown sampler",
        "study-sma.yaml",
        lambda s: s["sampler"].update(type="bayes"),
        'spec.sampler.type: Unsupported value: "bayes": supported values: "tpe", "random", "grid", "cmaes"',
    ),
]


@pytest.mark.parametrize(("case", "example", "change", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_resource_is_rejected_with_the_api_servers_own_cause(
    case: str, example: str, change: Any, message: str
) -> None:
    doc = _edit(example, change)
    errors = admit(CRDS[doc["kind"]], doc)
    assert message in errors, f"{case}: {errors}"


def test_backtest_spec_is_immutable_once_created() -> None:
    old = _example("backtest-sma.yaml")
    new = _edit("backtest-sma.yaml", lambda s: s["strategy"]["params"].update(fast=20))
    assert admit(CRDS["Backtest"], new, old=old) == [f"spec: Invalid value: {IMMUTABLE_MESSAGE}"]
    assert admit(CRDS["Backtest"], copy.deepcopy(old), old=old) == []


def test_live_mode_with_every_limit_is_admitted() -> None:
    assert admit(CRDS["LiveDeployment"], _example("live-live.yaml")) == []


def test_study_spec_is_immutable_once_created() -> None:
    old = _example("study-sma.yaml")
    new = _edit("study-sma.yaml", lambda s: s.update(trials=int(s.get("trials", 100)) + 1))
    assert admit(CRDS["OptimizationStudy"], new, old=old) == [f"spec: Invalid value: {STUDY_IMMUTABLE_MESSAGE}"]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_name_longer_than_a_label_value_is_refused_with_the_reason(kind: str) -> None:
    doc = _example(
        {"Backtest": "backtest-sma.yaml", "OptimizationStudy": "study-sma.yaml"}.get(kind, "live-paper.yaml")
    )
    doc["metadata"]["name"] = "x" * 64
    assert admit(CRDS[kind], doc) == [f"<nil>: Invalid value: {name_message(kind)}"]
    doc["metadata"]["name"] = "x" * 63
    assert admit(CRDS[kind], doc) == []
