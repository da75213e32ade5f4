"""Prometheus metrics of a live runner, read from its session snapshot at scrape time.

The runner's HTTP endpoint (`live.http`) serves them on `GET /metrics` without the bearer
token, as it serves `/healthz`: a Prometheus PodMonitor cannot hold each deployment's own
token, and the numbers here are aggregates (connection, kill switch, PnL, order and position
counts), never orders, symbols or the account. Gauges are built per scrape from the snapshot,
so they can never disagree with `GET /status`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# name -> (help, how to read it from the snapshot)
GAUGES: dict[str, tuple[str, Callable[[dict[str, Any]], float | None]]] = {
    "kubetrader_live_connected": (
        "1 while the runner is connected to its gateway (and the link is not lost), else 0.",
        lambda s: float(bool(s.get("connected"))),
    ),
    "kubetrader_live_halted": (
        "1 while the kill switch or a risk halt stops new exposure.",
        lambda s: float(bool(s.get("halted"))),
    ),
    "kubetrader_live_stop_blocked": (
        "1 while the runner's stop (flatten) is blocked by the broker, else 0.",
        lambda s: float(bool(s.get("stop_blocked"))),
    ),
    "kubetrader_live_pnl": ("The day's PnL (equity minus the day's starting equity).", lambda s: s.get("pnl")),
    "kubetrader_live_unrealized_pnl": (
        "PnL of the open positions at the last prices.",
        lambda s: s.get("unrealized_pnl"),
    ),
    "kubetrader_live_realized_pnl": ("The day's realised PnL.", lambda s: s.get("realized_pnl")),
    "kubetrader_live_equity": ("Account equity as the runner sees it.", lambda s: s.get("equity")),
    "kubetrader_live_open_orders": (
        "Orders sent and not yet resolved.",
        lambda s: float(len(s.get("open_orders") or [])),
    ),
    "kubetrader_live_positions": ("Symbols with a non-zero position.", lambda s: float(len(s.get("positions") or {}))),
    "kubetrader_live_last_heartbeat_timestamp_seconds": (
        "Wall-clock time of the last heartbeat from the gateway.",
        lambda s: s.get("last_heartbeat"),
    ),
}
METRIC_NAMES = set(GAUGES)


class SnapshotCollector(Collector):
    """One gauge family per entry of GAUGES, labelled with the deployment and its mode."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self.snapshot()
        labels = [str(snapshot.get("deployment") or ""), str(snapshot.get("mode") or "")]
        for name, (doc, read) in GAUGES.items():
            family = GaugeMetricFamily(name, doc, labels=["deployment", "mode"])
            value = read(snapshot)
            if isinstance(value, int | float):
                family.add_metric(labels, float(value))
            yield family


def render(snapshot: Callable[[], dict[str, Any]]) -> bytes:
    """The Prometheus text exposition of one snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return generate_latest(registry)
