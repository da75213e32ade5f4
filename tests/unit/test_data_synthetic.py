"""Synthetic GBM bars (load tests only): deterministic, valid, the normalized shape."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kubetrader.data import COLUMNS, DataStore, data_hash, load_bars
from kubetrader.data.synthetic import Regime, synthetic_bars
from kubetrader.data.validation import validate_frame
from kubetrader.errors import SpecError


@pytest.mark.parametrize("timeframe", ["1d", "1h", "5m", "1m"])
def test_synthetic_bars_pass_validation_in_every_timeframe(timeframe: str) -> None:
    frame = synthetic_bars(periods=800, timeframe=timeframe, seed=7)
    assert len(frame) == 800
    assert list(frame.columns) == list(COLUMNS)
    assert str(pd.DatetimeIndex(frame.index).tz) == "UTC" and frame.index.name == "datetime"
    report = validate_frame(frame, symbol="SYN", timeframe=timeframe)
    assert report.valid, report.issues
    assert report.warnings == []


def test_same_seed_same_bars_other_seed_other_bars() -> None:
    assert data_hash(synthetic_bars(seed=1)) == data_hash(synthetic_bars(seed=1))
    assert data_hash(synthetic_bars(seed=1)) != data_hash(synthetic_bars(seed=2))


def test_regimes_change_the_volatility_of_returns() -> None:
    calm = synthetic_bars(periods=5000, seed=3, regimes=[Regime(volatility=0.1)])
    wild = synthetic_bars(
        periods=5000,
        seed=3,
        regimes=[Regime(volatility=0.1), Regime(drift=-0.2, volatility=0.8)],
        switch_probability=0.05,
    )
    calm_vol = float(np.log(calm["close"]).diff().std() * np.sqrt(252))
    wild_vol = float(np.log(wild["close"]).diff().std() * np.sqrt(252))
    assert calm_vol == pytest.approx(0.1, rel=0.1)
    assert wild_vol > 2 * calm_vol


def test_synthetic_bars_merge_into_the_store_and_load(data_store: DataStore) -> None:
    frame = synthetic_bars(periods=300, seed=11)
    report = data_store.merge("SYN1", "1d", frame, source="synthetic:seed=11")
    assert report.added == 300
    loaded = load_bars("SYN1", store=data_store)
    pd.testing.assert_frame_equal(loaded, frame, check_freq=False)


def test_bad_synthetic_arguments_name_the_argument() -> None:
    with pytest.raises(SpecError, match="switch_probability"):
        synthetic_bars(switch_probability=2.0)
    with pytest.raises(SpecError, match="timeframe"):
        synthetic_bars(timeframe="1w")
