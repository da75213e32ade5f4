"""kubetrader.formatting: one way every view writes a number, a date and a metric's name."""

from __future__ import annotations

import math

from kubetrader import formatting as fmt
from kubetrader.specs.metrics import METRIC_NAMES, METRICS


def test_fractions_money_ratios_and_missing_values_read_one_way() -> None:
    assert fmt.metric_value("total_return", 0.8398) == "83.98%"
    assert fmt.metric_value("max_drawdown", -0.3137) == "-31.37%"
    assert fmt.metric_value("final_value", 183975.3057) == "183,975.31"
    assert fmt.metric_value("sharpe_ratio", 0.40361) == "0.40"
    assert fmt.metric_value("num_trades", 48.0) == "48"
    assert fmt.metric_value("max_drawdown_duration", 1175.0) == "1,175 days"
    for missing in (None, math.nan, math.inf):
        assert fmt.metric_value("sharpe_ratio", missing) == fmt.MISSING
        assert fmt.percent(missing) == fmt.money(missing) == fmt.MISSING


def test_every_metric_has_a_label_a_unit_and_a_description() -> None:
    assert set(METRICS) == set(METRIC_NAMES)
    assert all(info.label and info.description and "_" not in info.label for info in METRICS.values())
    assert fmt.metric_label("sharpe_ratio") == "Sharpe"
    assert fmt.metric_help("max_drawdown").startswith("Deepest fall")


def test_dates_read_in_the_exchange_zone_and_mlflow_times_as_dates() -> None:
    assert fmt.timestamp("2014-12-16T00:00:00+00:00") == "2014-12-16"  # a daily bar: its session's date
    assert fmt.timestamp("2014-12-16T15:35:00+00:00") == "2014-12-16 10:35"  # intraday, New York time
    assert fmt.timestamp(None) == fmt.MISSING
    assert fmt.epoch_ms(1796154658101) == "2026-12-01 14:50"  # 19:50:58 UTC
    assert fmt.plain("`KUBETRADER_X` is off") == "KUBETRADER_X is off"
