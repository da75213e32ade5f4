"""One definition of a trade (kubetrader.results.trades: closed round trips; open positions
apart): the metrics, the CLI table, the tearsheet and every API view count the same trades,
for the bundled example and each example strategy."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from tests.fixtures.dashboard import DASHBOARD_RUNS, backtest_document, dashboard_settings
from tests.helpers import ROOT

pytestmark = pytest.mark.xdist_group("dashboard")


def _bundled_backtests() -> list[dict[str, Any]]:
    documents = [yaml.safe_load(path.read_text()) for path in sorted((ROOT / "examples").glob("*.yaml"))]
    examples = [d for d in documents if d.get("kind") == "Backtest"]
    assert examples, "no bundled Backtest example"
    for document in (backtest_document(*run) for run in DASHBOARD_RUNS):
        document["spec"]["tracking"]["enabled"] = False
        examples.append(document)
    return examples


def test_every_view_counts_the_same_trades(tmp_path: Path, bundled_store: Any) -> None:
    from kubetrader import pipeline
    from kubetrader.results.report import metrics_table
    from kubetrader.results.trades import closed_trades, open_positions
    from kubetrader.specs import parse_resource
    from kubetrader_dashboard.api.main import create_app

    outcomes = []
    for document in _bundled_backtests():
        document["spec"].setdefault("tracking", {})["enabled"] = False
        resource = parse_resource(document)
        outcome = pipeline.execute(resource.spec, name=resource.metadata.name, output_dir=tmp_path, store=bundled_store)  # type: ignore[arg-type]
        assert outcome.status == "succeeded", outcome.error
        outcomes.append(outcome)
    assert any(open_positions(o.document.trades) for o in outcomes), "no example ends with an open position"
    settings = dashboard_settings(tmp_path, None, None)
    with TestClient(create_app(settings)) as client:
        listed = {b["id"]: b for b in client.get("/api/v1/backtests", params={"limit": 100}).json()["items"]}
        for outcome in outcomes:
            document = outcome.document
            closed = len(closed_trades(document.trades))
            still_open = len(open_positions(document.trades))
            assert document.metrics["num_trades"] == closed
            table_row = next(line for line in metrics_table(document.metrics).splitlines() if "num_trades" in line)
            assert table_row.split()[1] == f"{closed:,}"
            tearsheet = outcome.paths.tearsheet.read_text()
            assert re.search(rf"Last \d+ of {closed} trades", tearsheet)
            assert (f"Open at the end ({still_open}," in tearsheet) == bool(still_open)
            detail = client.get(f"/api/v1/backtests/{outcome.id}").json()
            assert (detail["trade_count"], detail["open_positions"]) == (closed, still_open)
            trades = client.get(f"/api/v1/backtests/{outcome.id}/trades", params={"limit": 1000}).json()
            assert trades["total"] == closed and not any(t["open"] for t in trades["items"])
            held = client.get(f"/api/v1/backtests/{outcome.id}/trades", params={"state": "open"}).json()
            assert held["total"] == still_open and all(t["open"] and t["exit_time"] is None for t in held["items"])
            assert listed[outcome.id]["num_trades"] == closed
            log = client.get("/api/v1/trades", params={"result_id": outcome.id, "limit": 1000}).json()
            assert log["total"] == closed


def test_the_quantstats_tearsheet_is_offered_and_its_absence_is_a_clear_error(
    tmp_path: Path, dashboard_results: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from kubetrader.errors import SpecError
    from kubetrader.results.report import write_quantstats_tearsheet

    document = next(iter(dashboard_results.documents.values()))
    page = write_quantstats_tearsheet(document, tmp_path / "qs.html").read_text()
    assert "Sharpe" in page and document.metadata.name in page
    monkeypatch.setitem(sys.modules, "quantstats", None)  # as if the extra were not installed
    with pytest.raises(SpecError, match=r"pip install 'kubetrader\[quantstats\]'"):
        write_quantstats_tearsheet(document, tmp_path / "again.html")
