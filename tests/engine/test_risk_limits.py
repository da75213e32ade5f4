"""Each risk limit binds when set tight, with RiskEvents recorded; reducing orders always pass."""

from __future__ import annotations

from typing import Any

from kubetrader.runner import BacktestRunner


def _run(store: Any, spec: Any) -> Any:
    return BacktestRunner(spec, store=store).run()


def test_max_position_size_reduces_entries(bundled_store: Any, make_spec: Any) -> None:
    spec = make_spec(start="2005-01-01", end="2007-12-31", risk={"maxPositionSize": 100})
    result = _run(bundled_store, spec)
    assert len(result.trades) > 3
    assert (result.trades["size"] == 100).all()
    reduced = [e for e in result.risk_events if e.rule == "max_position_size"]
    assert reduced and all(e.action == "reduced" and e.allowed == 100 for e in reduced)
    assert all(e.requested is not None and e.requested > 100 for e in reduced)


def test_max_concentration_caps_position_value(bundled_store: Any, make_spec: Any) -> None:
    spec = make_spec(start="2005-01-01", end="2007-12-31", risk={"maxConcentration": 0.25})
    result = _run(bundled_store, spec)
    events = [e for e in result.risk_events if e.rule == "max_concentration"]
    assert events and all(e.action == "reduced" for e in events)
    # Sized on the signal bar's close: exposure stays near 25 % (it drifts with the price afterwards).
    assert 0.2 < result.exposure.max() < 0.35


def test_max_order_notional_reduces_each_order(bundled_store: Any, make_spec: Any) -> None:
    spec = make_spec(start="2005-01-01", end="2007-12-31", risk={"maxOrderNotional": 5_000})
    result = _run(bundled_store, spec)
    events = [e for e in result.risk_events if e.rule == "max_order_notional"]
    assert events
    buys = [o for o in result.orders if o.side == "buy" and o.status == "Completed"]
    assert buys and all(o.size * (o.price or 0) < 5_000 * 1.1 for o in buys)


def test_max_daily_loss_refuses_entries_for_the_rest_of_the_day_only(
    bundled_store: Any, make_spec: Any, probe_strategies: str
) -> None:
    spec = make_spec(
        f"{probe_strategies}Churn",
        symbols=("IDX2006",),
        timeframe="5m",
        start="2006-01-01",
        end="2006-03-31",
        risk={"maxDailyLoss": 0.002},
    )
    result = _run(bundled_store, spec)
    halted_days = {e.time[:10] for e in result.risk_events if e.action == "halted_day"}
    refused_days = {e.time[:10] for e in result.risk_events if e.rule == "max_daily_loss" and e.action == "refused"}
    assert halted_days
    assert refused_days and refused_days <= halted_days
    fills_after_first_halt = [o for o in result.orders if o.status == "Completed" and o.time[:10] > min(halted_days)]
    assert fills_after_first_halt, "a daily halt must not stop trading on the following days"
    assert not any(e.action == "halted" for e in result.risk_events)


def test_max_drawdown_halts_for_good_and_flattens(bundled_store: Any, make_spec: Any) -> None:
    spec = make_spec(risk={"maxDrawdown": 0.10})
    result = _run(bundled_store, spec)
    halts = [e for e in result.risk_events if e.action == "halted"]
    assert len(halts) == 1
    halt_time = halts[0].time
    assert any(e.action == "flattened" for e in result.risk_events)
    assert result.positions == {"ORCL": 0.0}
    later_entries = result.trades[result.trades["entry_time"] > halt_time]
    assert later_entries.empty
    assert result.closed_trades["exit_time"].max() > halt_time  # the flattening sale happened after the halt
    refused = [e for e in result.risk_events if e.rule == "max_drawdown" and e.action == "refused"]
    assert refused, "crossovers after the halt are refused, not silently dropped"
