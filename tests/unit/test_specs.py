"""The spec models: the contract every runtime shares."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from kubetrader.specs import BacktestSpec, LiveDeploymentSpec, OptimizationStudySpec, parse_resource

ROOT = Path(__file__).resolve().parents[2]


def _backtest(**overrides: object) -> dict[str, object]:
    spec: dict[str, object] = {
        "strategy": {"path": "strategies.sma_crossover.SMACrossover", "params": {"fast": 10}},
        "data": {"symbols": ["ORCL"], "start": "2005-01-01", "end": "2014-12-31"},
    }
    spec.update(overrides)
    return spec


def test_example_backtest_parses_with_camel_case_fields() -> None:
    doc = yaml.safe_load((ROOT / "examples/backtest-sma.yaml").read_text())
    resource = parse_resource(doc)
    spec = resource.spec
    assert isinstance(spec, BacktestSpec)
    assert spec.broker.slippage.market_bps == 5
    assert spec.benchmark_symbol == "ORCL"
    assert spec.to_wire()["broker"]["commission"]["model"] == "ib-standard"  # type: ignore[index]


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"data": {"symbols": ["ORCL"], "start": "2014-01-01", "end": "2005-01-01"}}, "must be after start"),
        ({"broker": {"cash": -5}}, "broker.cash"),
        ({"broker": {"commission": {"model": "robinhood"}}}, "broker.commission.model"),
        ({"broker": {"comission": {}}}, "broker.comission"),
        ({"data": {"symbols": [], "start": "2005-01-01", "end": "2006-01-01"}}, "data.symbols"),
        ({"strategy": {"path": "not a path"}}, "strategy.path"),
    ],
)
def test_bad_backtest_specs_name_the_field(patch: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        BacktestSpec.model_validate(_backtest(**patch))
    rendered = str(info.value).replace("\n", " ")
    dotted = " ".join(".".join(str(p) for p in e["loc"]) + " " + e["msg"] for e in info.value.errors())
    assert message in rendered or message in dotted


def test_live_mode_requires_every_risk_limit() -> None:
    base = {"strategy": {"path": "strategies.sma_crossover.SMACrossover"}, "symbols": ["ORCL"], "risk": {}}
    assert LiveDeploymentSpec.model_validate(base).api_port == 4002
    with pytest.raises(ValidationError, match="missing: max_position_size"):
        LiveDeploymentSpec.model_validate({**base, "mode": "live"})


def test_study_rejects_parallelism_above_trials_and_unknown_metric() -> None:
    study = {"backtest": _backtest(), "space": {"fast": {"type": "int", "low": 5, "high": 50}}}
    assert OptimizationStudySpec.model_validate(study).objective.metric == "sharpe_ratio"
    with pytest.raises(ValidationError, match="parallelism"):
        OptimizationStudySpec.model_validate({**study, "trials": 2, "parallelism": 4})
    with pytest.raises(ValidationError, match="did you mean 'sharpe_ratio'"):
        OptimizationStudySpec.model_validate({**study, "objective": {"metric": "sharpe"}})


def test_parse_resource_rejects_wrong_kind_and_version() -> None:
    with pytest.raises(ValueError, match="apiVersion"):
        parse_resource({"apiVersion": "v1", "kind": "Backtest", "spec": {}})
    with pytest.raises(ValueError, match="kind"):
        parse_resource({"apiVersion": "kubetrader.io/v1alpha1", "kind": "Pod", "spec": {}})


def test_matrix_expands_to_the_cross_product_with_stable_ids() -> None:
    from kubetrader.specs import expand_matrix

    spec = BacktestSpec.model_validate(
        _backtest(
            matrix={
                "symbols": ["ORCL", "NVDA"],
                "strategies": ["strategies.sma_crossover.SMACrossover", "strategies.rsi_momentum.RSIMomentum"],
                "params": {"period": [10, 20]},
            }
        )
    )
    cells = expand_matrix(spec)
    assert len(cells) == 2 * 2 * 2
    assert len({cell_id for cell_id, _ in cells}) == 8
    assert cells == expand_matrix(spec)  # deterministic
    first = cells[0][1]
    assert first.matrix is None and first.data.symbols == ["ORCL"]
    assert first.strategy.params == {"fast": 10, "period": 10}  # base params kept for the base strategy
    rsi = next(c for _, c in cells if c.strategy.path.endswith("RSIMomentum"))
    assert rsi.strategy.params == {"period": 10}
    plain = BacktestSpec.model_validate(_backtest())
    assert next(c for _, c in expand_matrix(plain)) is plain
