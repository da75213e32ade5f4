"""The API's GET /metrics: requests by handler and status, outside the OpenAPI schema."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return bytes(response.read())


def test_metrics_count_requests_by_handler(dashboard_api: Any) -> None:
    _get(f"{dashboard_api.url}/api/v1/health")
    text = _get(f"{dashboard_api.url}/metrics").decode()
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    health = [s for s in samples if s.name == "kubetrader_api_requests_total" and s.labels["handler"] == "get_health"]
    assert health, [s for s in samples if s.name == "kubetrader_api_requests_total"]
    assert health[0].labels["method"] == "GET" and health[0].labels["status"] == "200"
    assert any(s.name == "kubetrader_api_request_duration_seconds_bucket" for s in samples)
    schema = json.loads(_get(f"{dashboard_api.url}/api/v1/openapi.json"))
    assert "/metrics" not in schema["paths"]
