"""The Logs tab's API: a local run's engine log beside its result, and no way out of the listing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.fixtures.dashboard import DASHBOARD_RUNS, backtest_document, dashboard_settings

pytestmark = pytest.mark.xdist_group("dashboard")


def test_a_local_run_keeps_its_log_beside_the_result_and_the_api_serves_it(tmp_path: Path, bundled_store: Any) -> None:
    from kubetrader import pipeline
    from kubetrader.specs import parse_resource
    from kubetrader_dashboard.api.main import create_app

    document = backtest_document(*DASHBOARD_RUNS[0])
    document["spec"]["tracking"]["enabled"] = False
    resource = parse_resource(document)
    outcome = pipeline.execute(resource.spec, name="sma-orcl-fast", output_dir=tmp_path, store=bundled_store)  # type: ignore[arg-type]
    assert outcome.paths is not None and outcome.paths.log.is_file()
    with TestClient(create_app(dashboard_settings(tmp_path, None, None))) as client:
        sources = client.get("/api/v1/logs", params={"kind": "Backtest"}).json()
        assert [(s["name"], s["origin"]) for s in sources["items"]] == [("sma-orcl-fast", "local")]
        assert "switched off" in sources["cluster_reason"]
        text = client.get(f"/api/v1/logs/{sources['items'][0]['key']}").json()
        assert any(f"backtest {outcome.id} succeeded" in line for line in text["lines"]), text
        assert any("strategies.sma_crossover.SMACrossover on ORCL" in line for line in text["lines"])
        for bad in ("backtest...%2F..%2Fetc%2Fpasswd", "backtest.nope", "pod.x", "other.y"):
            assert client.get(f"/api/v1/logs/{bad}").status_code == 404, bad
        events = client.get("/api/v1/events").json()
        assert not events["available"]
