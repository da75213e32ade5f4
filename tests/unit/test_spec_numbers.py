"""Numbers in specs are finite, and a parameter value is one scalar (issue 18, items 2 and 5).

`cash: .inf` once passed validation and failed mid-run as "cannot convert float NaN to
integer"; `marketBps: .nan` was reported as "less than or equal to 1000"; a list as a
strategy parameter was reported at `...params.fast.bool`.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from typing import Any

import pytest
from pydantic import ValidationError

from kubetrader import specs
from kubetrader.cli.options import spec_error_from_validation
from kubetrader.specs import BacktestSpec, SpecModel

NON_FINITE = [math.inf, -math.inf, math.nan]


def _backtest(**broker: Any) -> dict[str, Any]:
    return {
        "strategy": {"path": "strategies.sma_crossover.SMACrossover", "params": {"fast": 10}},
        "data": {"symbols": ["ORCL"], "start": "2005-01-01", "end": "2014-12-31"},
        "broker": broker,
    }


def _has_float(annotation: Any) -> bool:
    if annotation is float:
        return True
    return any(_has_float(arg) for arg in typing.get_args(annotation))


def _shaped(annotation: Any, value: float) -> Any:
    """`value` in the shape of the annotation: as is, in a list, or in a mapping (`params: {name: [value]}`)."""
    origin = typing.get_origin(annotation)
    if origin is list:
        return [_shaped(typing.get_args(annotation)[0], value)]
    if origin is dict:
        return {"name": _shaped(typing.get_args(annotation)[1], value)}
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        inner = [a for a in typing.get_args(annotation) if _has_float(a)]
        return _shaped(inner[0], value)
    return value


def _spec_models() -> list[type[SpecModel]]:
    found: dict[str, type[SpecModel]] = {}
    for module in (specs.backtest, specs.live, specs.study):
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, SpecModel) and obj is not SpecModel:
                found[obj.__qualname__] = obj
    return list(found.values())


FLOAT_FIELDS = [
    (model, name, field.alias or name, field.annotation)
    for model in _spec_models()
    for name, field in model.model_fields.items()
    if _has_float(field.annotation)
]


def test_the_float_fields_are_found() -> None:
    names = {f"{m.__name__}.{n}" for m, n, _, _ in FLOAT_FIELDS}
    assert {"BrokerSpec.cash", "SlippageSpec.market_bps", "RiskSpec.max_drawdown", "FloatParam.low"} <= names


@pytest.mark.parametrize("value", NON_FINITE, ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize(
    ("model", "name", "alias", "annotation"), FLOAT_FIELDS, ids=[f"{m.__name__}.{n}" for m, n, _, _ in FLOAT_FIELDS]
)
def test_every_float_field_of_every_spec_refuses_non_finite_numbers(
    model: type[SpecModel], name: str, alias: str, annotation: Any, value: float
) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate({alias: _shaped(annotation, value)})
    mine = [e for e in info.value.errors() if e["loc"][:1] == (alias,)]
    assert mine, f"{model.__name__}.{name} accepted {value}"
    assert all("finite number" in e["msg"] for e in mine), mine


@pytest.mark.parametrize(
    ("broker", "field"),
    [
        ({"cash": math.inf}, "broker.cash"),
        ({"slippage": {"marketBps": math.nan}}, "broker.slippage.marketBps"),
        ({"secFeePerMillion": -math.inf}, "broker.secFeePerMillion"),
        ({"commission": {"model": "custom", "perShare": math.nan}}, "broker.commission.perShare"),
    ],
)
def test_non_finite_broker_numbers_are_refused_naming_the_field(broker: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        BacktestSpec.model_validate(_backtest(**broker))
    error = spec_error_from_validation(info.value)
    assert error.field == field
    assert error.problem.startswith("must be a finite number")


def test_non_finite_strategy_parameter_is_refused_at_its_name() -> None:
    spec = _backtest()
    spec["strategy"]["params"] = {"target": math.inf}
    with pytest.raises(ValidationError) as info:
        BacktestSpec.model_validate(spec)
    error = spec_error_from_validation(info.value)
    assert (error.field, error.problem) == ("strategy.params.target", "must be a finite number, not inf")


@pytest.mark.parametrize(("value", "kind"), [([1, 2], "list"), ({"a": 1}, "dict"), (None, "null")])
def test_a_parameter_that_is_not_one_scalar_is_reported_at_its_name(value: Any, kind: str) -> None:
    spec = _backtest()
    spec["strategy"]["params"] = {"fast": value}
    with pytest.raises(ValidationError) as info:
        BacktestSpec.model_validate(spec)
    assert len(info.value.errors()) == 1
    error = spec_error_from_validation(info.value)
    assert error.field == "strategy.params.fast"
    assert error.problem == f"must be a boolean, number or string, not {kind}"


def test_scalar_parameters_keep_their_types() -> None:
    spec = _backtest()
    spec["strategy"]["params"] = {"fast": 10, "target": 0.5, "flag": True, "name": "x"}
    params = BacktestSpec.model_validate(spec).strategy.params
    assert params == {"fast": 10, "target": 0.5, "flag": True, "name": "x"}
    assert [type(v) for v in params.values()] == [int, float, bool, str]
