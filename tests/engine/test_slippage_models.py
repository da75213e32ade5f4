"""Capped and uncapped slippage on real data, as the README states them (issue 18, item 6)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest


def _charged_bps(result: Any, frame: Any) -> np.ndarray:
    """Per market fill: how far from the bar's open it filled, in bps (the slippage actually charged)."""
    opens = frame["open"]
    charged = []
    for order in result.orders:
        if order.status != "Completed":
            continue
        bar_open = float(opens.loc[dt.datetime.fromisoformat(order.time)])
        charged.append(abs(order.price / bar_open - 1) * 10_000)
    return np.array(charged)


@pytest.mark.parametrize(("bps", "capped_mean", "capped_fills"), [(5, 4.74, 5), (50, 40.52, 33)])
def test_capped_slippage_charges_less_than_the_rate_and_uncapped_charges_all_of_it(
    bundled_store: Any, make_spec: Any, bps: float, capped_mean: float, capped_fills: int
) -> None:
    from kubetrader.data import load_bars
    from kubetrader.runner import BacktestRunner

    frame = load_bars("ORCL", start=dt.date(2005, 1, 1), end=dt.date(2014, 12, 31), store=bundled_store)
    broker = {"cash": 100_000, "commission": {"model": "ib-standard"}}
    capped = BacktestRunner(
        make_spec(params={"fast": 10, "slow": 30}, broker={**broker, "slippage": {"marketBps": bps}}),
        store=bundled_store,
    ).run()
    uncapped = BacktestRunner(
        make_spec(
            params={"fast": 10, "slow": 30}, broker={**broker, "slippage": {"marketBps": bps, "model": "uncapped"}}
        ),
        store=bundled_store,
    ).run()
    on_capped, on_uncapped = _charged_bps(capped, frame), _charged_bps(uncapped, frame)
    assert on_uncapped == pytest.approx(np.full(len(on_uncapped), bps), rel=1e-9)
    assert on_capped.mean() == pytest.approx(capped_mean, abs=0.01)
    assert int((on_capped < bps - 1e-6).sum()) == capped_fills
