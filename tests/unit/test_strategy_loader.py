"""Loading strategies by path: allowed prefixes, clear errors naming the field, param checks."""

from __future__ import annotations

import re

import pytest

from kubetrader.errors import SpecError
from kubetrader.strategy_loader import check_params, load_strategy
from strategies.sma_crossover import SMACrossover


def test_loads_example_strategy_by_path() -> None:
    assert load_strategy("strategies.sma_crossover.SMACrossover") is SMACrossover


def test_refuses_module_outside_allowed_prefixes() -> None:
    with pytest.raises(SpecError, match=r"spec.strategy.path: 'os.path.join' is outside the allowed"):
        load_strategy("os.path.join")


def test_prefixes_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETRADER_STRATEGY_PREFIXES", "mycompany.strategies.")
    with pytest.raises(SpecError, match=re.escape("outside the allowed strategy modules (mycompany.strategies.)")):
        load_strategy("strategies.sma_crossover.SMACrossover")


def test_missing_module_is_named() -> None:
    with pytest.raises(SpecError, match=re.escape("no module named 'strategies.nope'")):
        load_strategy("strategies.nope.Thing")


def test_missing_class_suggests_the_close_one() -> None:
    with pytest.raises(SpecError, match="has no class 'SMACrosover' \\(did you mean 'SMACrossover'\\?\\)"):
        load_strategy("strategies.sma_crossover.SMACrosover")


def test_class_that_is_not_a_base_strategy_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETRADER_STRATEGY_PREFIXES", "tests.engine.probe_strategies.")
    with pytest.raises(SpecError, match=re.escape("is not a subclass of strategies.base_strategy.BaseStrategy")):
        load_strategy("tests.engine.probe_strategies.NotAStrategy")


def test_unknown_param_names_the_field_and_suggests() -> None:
    with pytest.raises(SpecError) as info:
        check_params(SMACrossover, {"fats": 10})
    assert info.value.field == "spec.strategy.params.fats"
    assert "did you mean 'fast'" in info.value.problem


def test_wrong_param_type_is_refused() -> None:
    with pytest.raises(SpecError, match=r"spec\.strategy\.params\.fast: expected int .* got 'ten'"):
        check_params(SMACrossover, {"fast": "ten"})


def test_bool_is_not_an_int() -> None:
    with pytest.raises(SpecError, match="expected int"):
        check_params(SMACrossover, {"slow": True})


def test_ints_widen_to_float_and_integral_floats_narrow_to_int() -> None:
    assert check_params(SMACrossover, {"target": 1, "fast": 12.0}) == {"target": 1.0, "fast": 12}


def test_risk_limits_are_not_strategy_params() -> None:
    with pytest.raises(SpecError, match=re.escape("risk limits are set under spec.risk")):
        check_params(SMACrossover, {"max_drawdown": 0.2})
