"""Promotion to `mode: live`: required by the CRD's CEL, matched against what the Backtest tested, fresh enough;
and `mode` cannot be edited (paper <-> live is a new resource)."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
import yaml

from kubetrader.specs.live import LiveDeploymentSpec, PromotionSpec
from kubetrader_operator.live.status import promotion_refusal
from tests.helpers import EXAMPLES
from tests.kube.crd_validation import admit, load_crds

CRD = load_crds()["LiveDeployment"]
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text())


def test_live_without_promotion_is_refused_by_the_api_server() -> None:
    doc = example("live-live.yaml")
    assert admit(CRD, doc) == []
    doc["spec"].pop("promotion")
    assert any("needs spec.promotion.fromBacktest" in e for e in admit(CRD, doc))


@pytest.mark.parametrize(("old_name", "new_mode"), [("live-paper.yaml", "live"), ("live-live.yaml", "paper")])
def test_paper_and_live_cannot_be_swapped_by_an_edit(old_name: str, new_mode: str) -> None:
    old = example(old_name)
    new = copy.deepcopy(example("live-live.yaml") if new_mode == "live" else old)
    new["metadata"] = old["metadata"]
    new["spec"]["mode"] = new_mode
    errors = admit(CRD, new, old)
    assert any("spec.mode is immutable" in e for e in errors)
    same = copy.deepcopy(old)
    same["spec"]["risk"]["maxPositionSize"] = 1
    assert not any("immutable" in e for e in admit(CRD, same, old))


def live_spec(**changes: Any) -> LiveDeploymentSpec:
    return LiveDeploymentSpec.model_validate({**example("live-live.yaml")["spec"], **changes})


def backtest(*, finished: str = "2026-05-20T00:00:00Z", **spec_changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "strategy": {"path": "strategies.sma_crossover.SMACrossover", "params": {"fast": 10, "slow": 30}},
        "data": {"symbols": ["ORCL"], "start": "2010-01-01", "end": "2014-12-31", "timeframe": "1m"},
    }
    for key, value in spec_changes.items():
        section, field = key.split("__")
        spec[section][field] = value
    return {
        "spec": spec,
        "status": {
            "phase": "Succeeded",
            "completionTime": finished,
            "metrics": {"sharpeRatio": 1.0, "maxDrawdown": -0.1},
        },
    }


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        (backtest(), None),
        (backtest(strategy__path="strategies.rsi_momentum.RSIMomentum"), "strategy strategies.rsi_momentum"),
        (backtest(strategy__params={"fast": 5, "slow": 30}), "params"),
        (backtest(data__symbols=["NVDA"]), "symbols ['NVDA'] != ['ORCL']"),
        (backtest(data__timeframe="1d"), "timeframe 1d != 1m"),
        (backtest(finished="2026-01-01T00:00:00Z"), "finished 151.0 days ago, older than 30 days"),
    ],
)
def test_the_gate_checks_that_the_backtest_tested_what_will_trade_and_is_fresh(
    found: dict[str, Any], expected: str | None
) -> None:
    live = live_spec(timeframe="1m")
    promotion = PromotionSpec(from_backtest="sma-orcl", min_sharpe=0.5, max_backtest_age_days=30)
    refusal = promotion_refusal(promotion, found, live, now=NOW)
    assert refusal == expected if expected is None else (refusal is not None and expected in refusal)


def test_the_operators_default_age_applies_when_the_promotion_sets_none() -> None:
    promotion = PromotionSpec(from_backtest="sma-orcl")
    old = backtest(finished="2026-01-01T00:00:00Z")
    live = live_spec(timeframe="1m")
    assert promotion_refusal(promotion, old, live, now=NOW) is None
    refusal = promotion_refusal(promotion, old, live, now=NOW, max_age_days=90)
    assert refusal is not None and "older than 90 days" in refusal


def test_edits_that_would_not_be_safe_on_a_running_deployment_are_refused_at_admission() -> None:
    """#15 item 6: a gateway edit (account, image, port, client id) or a lost symbol needs a new resource."""
    old = example("live-paper.yaml")
    moved = copy.deepcopy(old)
    moved["spec"]["gateway"]["credentialsSecret"] = "someone-elses-account"
    assert any("spec.gateway is immutable" in e for e in admit(CRD, moved, old))
    client = copy.deepcopy(old)
    client["spec"]["gateway"]["clientId"] = 7
    assert any("spec.gateway is immutable" in e for e in admit(CRD, client, old))
    fewer = copy.deepcopy(old)
    fewer["spec"]["symbols"] = ["NVDA"]
    assert any("may gain symbols, not lose them" in e for e in admit(CRD, fewer, old))
    safe = copy.deepcopy(old)
    safe["spec"]["symbols"] = ["ORCL", "NVDA"]
    safe["spec"]["risk"]["maxPositionSize"] = 1
    safe["spec"]["stopPolicy"]["onUpdate"] = "flatten"
    assert admit(CRD, safe, old) == []


def test_a_gateway_image_must_be_pinned_by_digest_at_admission() -> None:
    doc = example("live-paper.yaml")
    doc["spec"]["gateway"]["image"] = "ghcr.io/gnzsnz/ib-gateway:stable"
    assert any("spec.gateway.image" in e for e in admit(CRD, doc))
    doc["spec"]["gateway"]["image"] = "ghcr.io/gnzsnz/ib-gateway@sha256:" + "a" * 64
    assert admit(CRD, doc) == []


def robust_backtest(**metrics: float) -> dict[str, Any]:
    found = backtest()
    found["status"]["metrics"].update(metrics)
    return found


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({"deflatedSharpe": 0.97, "walkForwardEfficiency": 0.8}, None),
        ({"deflatedSharpe": 0.62, "walkForwardEfficiency": 0.8}, "deflated Sharpe 0.620 is below the minimum 0.95"),
        (
            {"deflatedSharpe": 0.97, "walkForwardEfficiency": 0.3},
            "walk-forward efficiency 0.300 is below the minimum 0.5",
        ),
        ({"walkForwardEfficiency": 0.8}, "reports no deflated Sharpe (status.metrics.deflatedSharpe)"),
        ({"deflatedSharpe": 0.97}, "reports no walk-forward efficiency"),
    ],
)
def test_the_gate_requires_the_robustness_minimums_the_promotion_sets(
    metrics: dict[str, float], expected: str | None
) -> None:
    promotion = PromotionSpec(from_backtest="sma-orcl", min_deflated_sharpe=0.95, min_walk_forward_efficiency=0.5)
    refusal = promotion_refusal(promotion, robust_backtest(**metrics), live_spec(timeframe="1m"), now=NOW)
    assert refusal == expected if expected is None else (refusal is not None and expected in refusal)
    # without a threshold the numbers are not required
    assert (
        promotion_refusal(PromotionSpec(from_backtest="sma-orcl"), backtest(), live_spec(timeframe="1m"), now=NOW)
        is None
    )


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [("minDeflatedSharpe", 1.5, "less than or equal to 1"), ("minDeflatedSharpe", -0.1, "greater than or equal to 0"),
     ("minWalkForwardEfficiency", 0, "greater than 0")],
)  # fmt: skip
def test_robustness_minimums_out_of_range_are_refused_by_pydantic_and_the_api_server(
    field: str, value: float, problem: str
) -> None:
    doc = example("live-live.yaml")
    doc["spec"]["promotion"][field] = value
    errors = admit(CRD, doc)
    assert any(f"spec.promotion.{field}" in e for e in errors), errors
    with pytest.raises(ValueError, match=problem) as info:
        LiveDeploymentSpec.model_validate(doc["spec"])
    assert field in str(info.value)


def test_a_backtests_robustness_numbers_reach_its_status_metrics() -> None:
    from kubetrader_operator.backtest.status import headline_metrics

    summary = {"metrics": {"sharpe_ratio": 1.2, "deflated_sharpe": 0.9, "walk_forward_efficiency": 0.7}}
    assert headline_metrics(summary) == {"sharpeRatio": 1.2, "deflatedSharpe": 0.9, "walkForwardEfficiency": 0.7}
    status_schema = load_crds()["Backtest"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert {"deflatedSharpe", "walkForwardEfficiency"} <= set(status_schema["properties"]["metrics"]["properties"])
