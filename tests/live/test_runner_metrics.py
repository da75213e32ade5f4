"""The live runner's GET /metrics: connection, halt, stop blocked, PnL and order counts, no token."""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from kubetrader.live.http import RunnerHTTPServer, SessionView
from kubetrader.live.metrics import METRIC_NAMES

SNAPSHOT: dict[str, Any] = {
    "deployment": "sma-paper",
    "mode": "paper",
    "connected": True,
    "halted": False,
    "stop_blocked": True,
    "pnl": -125.5,
    "unrealized_pnl": -100.0,
    "realized_pnl": -25.5,
    "equity": 99874.5,
    "positions": {"ABC": 300},
    "open_orders": [{"order_id": "kt-1"}, {"order_id": "kt-2"}],
    "last_heartbeat": 1_700_000_000.0,
}


def test_metrics_serve_the_snapshot_without_the_token() -> None:
    server = RunnerHTTPServer(
        SessionView(lambda: dict(SNAPSHOT), lambda _: None), host="127.0.0.1", port=0, token="t" * 32
    )
    server.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            text = response.read().decode()
    finally:
        server.stop()
    samples = {s.name: s for family in text_string_to_metric_families(text) for s in family.samples}
    assert set(samples) == METRIC_NAMES
    assert samples["kubetrader_live_connected"].value == 1
    assert samples["kubetrader_live_connected"].labels == {"deployment": "sma-paper", "mode": "paper"}
    assert samples["kubetrader_live_halted"].value == 0
    assert samples["kubetrader_live_stop_blocked"].value == 1
    assert samples["kubetrader_live_pnl"].value == -125.5
    assert samples["kubetrader_live_open_orders"].value == 2
    assert samples["kubetrader_live_positions"].value == 1
    assert "ABC" not in text and "kt-1" not in text  # aggregates only: no symbols, no orders


def test_a_snapshot_before_the_first_heartbeat_leaves_those_gauges_empty() -> None:
    from kubetrader.live.metrics import render

    text = render(lambda: {"deployment": "d", "mode": "paper", "connected": False})
    samples = {s.name: s.value for family in text_string_to_metric_families(text.decode()) for s in family.samples}
    assert samples["kubetrader_live_connected"] == 0
    assert "kubetrader_live_pnl" not in samples
