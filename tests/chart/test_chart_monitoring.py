"""Monitoring objects of the chart: the ServiceMonitors, PodMonitors and PrometheusRule are valid
Prometheus Operator objects, and the Grafana dashboard and the alerts name only metrics that the
code really exports (listed by importing the metric definitions, never by a hand-kept list)."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest

from tests.fixtures.chart import CHART_DIR, RenderedChart

# The fields of monitoring.coreos.com/v1 the chart uses, with their types, enums and patterns as
# the Prometheus Operator's CRDs give them (example/prometheus-operator-crd/monitoring.coreos.com_
# {servicemonitors,podmonitors,prometheusrules}.yaml at commit 6adcebc5076c, VERSION 0.93.0).
# Strict: a field that is not listed fails here, where the API server would prune it silently or
# refuse it under server-side field validation. A field the chart starts using is added here after
# checking the CRD.
DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": STRING_MAP},
}
NAMESPACE_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}},
}
LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"matchLabels": STRING_MAP, "matchExpressions": {"type": "array"}},
}
ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "port": {"type": "string"},
        "path": {"type": "string"},
        "interval": DURATION,
        "scrapeTimeout": DURATION,
        "honorLabels": {"type": "boolean"},
        "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
    },
}


def _object(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": METADATA,
            "spec": spec,
        },
    }


SCHEMAS = {
    "ServiceMonitor": _object(
        "ServiceMonitor",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["endpoints", "selector"],
            "properties": {
                "endpoints": {"type": "array", "items": ENDPOINT, "minItems": 1},
                "selector": LABEL_SELECTOR,
                "namespaceSelector": NAMESPACE_SELECTOR,
            },
        },
    ),
    "PodMonitor": _object(
        "PodMonitor",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector"],
            "properties": {
                "podMetricsEndpoints": {"type": "array", "items": ENDPOINT, "minItems": 1},
                "selector": LABEL_SELECTOR,
                "namespaceSelector": NAMESPACE_SELECTOR,
            },
        },
    ),
    "PrometheusRule": _object(
        "PrometheusRule",
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": DURATION,
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["expr"],
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "record": {"type": "string"},
                                        "expr": {"type": ["string", "integer"]},
                                        "for": DURATION,
                                        "keep_firing_for": DURATION,
                                        "labels": STRING_MAP,
                                        "annotations": STRING_MAP,
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    ),
}


def exported_metric_names() -> set[str]:
    """Every sample name the code exports, from the metric objects themselves."""
    from kubetrader.live.metrics import METRIC_NAMES as LIVE
    from kubetrader.queue.metrics import METRIC_NAMES as QUEUE
    from kubetrader.queue.metrics import exported_names
    from kubetrader_dashboard.api import metrics as api_metrics
    from kubetrader_operator import metrics as operator_metrics
    from kubetrader_operator.scaling import metrics as scaling_metrics

    operator = [
        operator_metrics.RECONCILES,
        operator_metrics.FAILURES,
        operator_metrics.DURATION,
        operator_metrics.LIVE_STOP_BLOCKED,
        scaling_metrics.DESIRED_REPLICAS,
        scaling_metrics.DECISIONS,
    ]
    return QUEUE | LIVE | exported_names(*operator, *api_metrics.METRICS)


# PromQL words that are not metric names: functions (followed by "("), aggregation modifiers,
# set and vector-matching operators.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label matchers, ranges, strings and grouping removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\boffset\s+\S+", "", expr)
    expr = re.sub(r"(?<![A-Za-z0-9_:])[0-9][A-Za-z0-9_.]*", "", expr)  # numbers and durations
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word, rest = match.group(0), expr[match.end() :]
        if rest.lstrip().startswith("(") or word in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def test_metric_names_in_reads_promql_as_prometheus_does() -> None:
    expr = 'histogram_quantile(0.95, sum by (le) (rate(a_bucket{x="y{z}"}[5m]))) / max(b > 0) or c offset 5m'
    assert metric_names_in(expr) == {"a_bucket", "b", "c"}


def test_exported_metric_names_come_from_the_definitions() -> None:
    names = exported_metric_names()
    for name in (
        "kubetrader_queue_pending",
        "kubetrader_queue_dead",
        "kubetrader_worker_tasks_total",
        "kubetrader_worker_task_duration_seconds_bucket",
        "kubetrader_redis_used_memory_bytes",
        "kubetrader_live_connected",
        "kubetrader_live_open_orders",
        "kubetrader_operator_live_stop_blocked",
        "kubetrader_operator_resource_failures_total",
        "kubetrader_api_requests_total",
    ):
        assert name in names, name
    assert "kubetrader_worker_tasks" not in names  # a counter is scraped as ..._total


def _platform(rendered_chart_scenarios: dict[str, RenderedChart]) -> RenderedChart:
    rendered = rendered_chart_scenarios["platform"]
    assert rendered.of_kind("ServiceMonitor") and rendered.of_kind("PodMonitor") and rendered.of_kind("PrometheusRule")
    return rendered


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_monitoring_objects_validate_against_the_prometheus_operator_schema(
    kind: str, rendered_chart_scenarios: dict[str, RenderedChart]
) -> None:
    for doc in _platform(rendered_chart_scenarios).of_kind(kind):
        jsonschema.validate(doc, SCHEMAS[kind])


def test_the_schema_refuses_a_misspelt_field() -> None:
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "endpoints": [{"port": "metrics", "intervall": "30s"}]},
    }
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        jsonschema.validate(doc, SCHEMAS["ServiceMonitor"])


def test_every_metrics_endpoint_has_a_monitor(rendered_chart_scenarios: dict[str, RenderedChart]) -> None:
    rendered = _platform(rendered_chart_scenarios)
    services = {m["metadata"]["name"]: m for m in rendered.of_kind("ServiceMonitor")}
    pods = {m["metadata"]["name"]: m for m in rendered.of_kind("PodMonitor")}
    assert set(services) == {"kubetrader-operator", "kubetrader-api"}
    assert set(pods) == {"kubetrader-worker", "kubetrader-live-runner"}
    # Each ServiceMonitor selects a Service whose port it names, and each PodMonitor pods with that port.
    for monitor in services.values():
        selector = monitor["spec"]["selector"]["matchLabels"]
        (endpoint,) = monitor["spec"]["endpoints"]
        matched = [
            s for s in rendered.of_kind("Service") if selector.items() <= s["metadata"].get("labels", {}).items()
        ]
        assert len(matched) == 1, (monitor["metadata"]["name"], [s["metadata"]["name"] for s in matched])
        assert endpoint["port"] in {p["name"] for p in matched[0]["spec"]["ports"]}
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
    worker = rendered.get("Deployment", "kubetrader-worker")["spec"]["template"]
    selector = pods["kubetrader-worker"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= worker["metadata"]["labels"].items()
    (container,) = worker["spec"]["containers"]
    assert {"name": "metrics", "containerPort": 9091} in container["ports"]
    assert "--metrics-port=9091" in container["args"]
    runner = pods["kubetrader-live-runner"]["spec"]
    assert runner["podMetricsEndpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]


def test_the_alerts_cover_what_should_page_and_use_exported_metrics_only(
    rendered_chart_scenarios: dict[str, RenderedChart],
) -> None:
    (rule,) = _platform(rendered_chart_scenarios).of_kind("PrometheusRule")
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert {r["alert"] for r in rules} == {
        "KubetraderLiveStopBlocked",
        "KubetraderLiveDisconnected",
        "KubetraderDeadLetterGrowing",
        "KubetraderRedisMemoryNearMax",
        "KubetraderBacktestsFailing",
    }
    exported = exported_metric_names()
    for r in rules:
        used = metric_names_in(r["expr"])
        assert used and used <= exported, (r["alert"], sorted(used - exported))
        assert r["labels"]["team"] == "trading-platform"  # monitoring.prometheusRule.alertLabels
    by_name = {r["alert"]: r for r in rules}
    assert "> 0.9" in by_name["KubetraderRedisMemoryNearMax"]["expr"]
    assert 'kind="Backtest"' in by_name["KubetraderBacktestsFailing"]["expr"]


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def test_grafana_dashboard_loads_and_queries_only_exported_metrics() -> None:
    dashboard = json.loads((CHART_DIR / "dashboards" / "kubetrader.json").read_text())
    panels = [p for p in _panels(dashboard) if p["type"] != "row"]
    assert len(panels) >= 10
    assert len({p["id"] for p in _panels(dashboard)}) == len(_panels(dashboard)), "panel ids are unique"
    exported = exported_metric_names()
    read: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = metric_names_in(target["expr"])
            assert used and used <= exported, (panel["title"], target["expr"], sorted(used - exported))
            read |= used
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert metric_names_in(variable["definition"].removeprefix("label_values(").split(",")[0]) <= exported
    # The dashboard shows each area: queue, workers, Redis, operator, API, live trading.
    for prefix in ("kubetrader_queue_", "kubetrader_worker_", "kubetrader_redis_", "kubetrader_operator_"):
        assert any(name.startswith(prefix) for name in read), prefix
    assert any(name.startswith("kubetrader_api_") for name in read)
    assert any(name.startswith("kubetrader_live_") for name in read)


def test_grafana_dashboard_configmap_carries_the_sidecar_label_and_the_json(
    rendered_chart_scenarios: dict[str, RenderedChart],
) -> None:
    config_map = _platform(rendered_chart_scenarios).get("ConfigMap", "kubetrader-grafana-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "kubetrader"}
    shipped = json.loads(config_map["data"]["kubetrader.json"])
    assert shipped == json.loads((CHART_DIR / "dashboards" / "kubetrader.json").read_text())
    assert not rendered_chart_scenarios["default"].of_kind("PrometheusRule", "ServiceMonitor", "PodMonitor")
