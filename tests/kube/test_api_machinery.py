"""The pure pieces the emulated API serves kubectl with: tables, selectors, paging, apply, discovery, events."""

from __future__ import annotations

import datetime as dt

import pytest
from kmock import ResourceInfo, resource

from tests.kube import apply, discovery, events, paging, selectors, tables
from tests.kube.openapi import OpenAPI

NOW = dt.datetime(2026, 1, 2, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (0, "0s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (9 * 3600, "9h"),
        (3 * 86400 + 3600, "3d1h"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400, "3y"),
    ],
)
def test_ages_read_as_the_api_machinery_prints_them(seconds: int, text: str) -> None:
    assert tables.human_duration(seconds) == text


def test_crd_columns_are_evaluated_as_the_apiextensions_server_does() -> None:
    columns = [
        {"name": "Symbols", "type": "string", "jsonPath": ".spec.data.symbols"},
        {"name": "Sharpe", "type": "number", "jsonPath": ".status.metrics.sharpeRatio"},
        {"name": "Trades", "type": "integer", "jsonPath": ".status.metrics.numTrades"},
        {"name": "First", "type": "string", "jsonPath": ".status.conditions[0].type"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    obj = {
        "metadata": {"name": "bt", "creationTimestamp": "2026-01-02T11:55:00Z"},
        "spec": {"data": {"symbols": ["ORCL", "NVDA"]}},
        "status": {"metrics": {"sharpeRatio": 1, "numTrades": 12.0}},
    }
    table = tables.table("Backtest", [obj], crd_printer_columns=columns, now=NOW)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Symbols", "Sharpe", "Trades", "First", "Age"]
    assert table["rows"][0]["cells"] == ["bt", '["ORCL","NVDA"]', 1.0, 12, None, "5m"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def test_builtin_printers_show_pod_and_job_states() -> None:
    meta = {"name": "p", "creationTimestamp": "2026-01-02T11:59:00Z"}
    pod = {
        "metadata": meta,
        "spec": {"containers": [{"name": "engine"}]},
        "status": {
            "phase": "Failed",
            "containerStatuses": [{"name": "engine", "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}],
        },
    }
    assert tables.table("Pod", [pod], now=NOW)["rows"][0]["cells"][:5] == ["p", "0/1", "Error", "0", "60s"]
    job = {
        "metadata": meta,
        "spec": {"template": {"spec": {"containers": [{"name": "engine", "image": "img"}]}}},
        "status": {
            "startTime": "2026-01-02T11:59:00Z",
            "completionTime": "2026-01-02T11:59:30Z",
            "succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True"}],
        },
    }
    assert tables.table("Job", [job], now=NOW)["rows"][0]["cells"][:5] == ["p", "Complete", "1/1", "30s", "60s"]
    unknown = tables.table("Lease", [{"metadata": meta}], now=NOW)
    assert [c["name"] for c in unknown["columnDefinitions"]] == ["Name", "Created At"]


def test_label_selectors_parse_and_match_like_the_api_server() -> None:
    labels = {"tier": "web", "n": "5"}
    assert selectors.matches_labels(labels, "tier in (web, db),n>3,!missing")
    assert selectors.matches_labels({}, "tier notin (web)")
    assert not selectors.matches_labels(labels, "tier notin (web),n")
    assert not selectors.matches_labels(labels, "n<5")
    for bad in ("tier in ()", "n>x", "a b"):
        with pytest.raises(selectors.SelectorError):
            selectors.parse_labels(bad)


def test_field_selectors_know_each_kinds_fields() -> None:
    event = {
        "metadata": {"name": "e"},
        "involvedObject": {"name": "a,b", "kind": "Backtest"},
        "source": {"component": "op"},
    }
    terms = selectors.parse_fields(r"involvedObject.name=a\,b,source=op,type!=Warning", "", "events")
    assert selectors.matches_fields(event, terms, "", "events")
    with pytest.raises(selectors.SelectorError, match=r"field label not supported: spec\.nodeName"):
        selectors.parse_fields("spec.nodeName=x", "batch", "jobs")


def test_paging_walks_the_keys_in_order_and_refuses_bad_tokens() -> None:
    items = [{"metadata": {"namespace": "ns", "name": n}} for n in "cab"]
    first, meta = paging.page(items, {"limit": "2"}, 7)
    assert [i["metadata"]["name"] for i in first] == ["a", "b"] and meta["remainingItemCount"] == 1
    rest, last = paging.page(items, {"limit": "2", "continue": meta["continue"]}, 9)
    assert [i["metadata"]["name"] for i in rest] == ["c"] and "continue" not in last
    assert last["resourceVersion"] == "7"  # the list's revision, as the first page said
    with pytest.raises(paging.ContinueError):
        paging.page(items, {"continue": "not-a-token"}, 7)


def test_apply_conflicts_are_worded_as_the_api_server_words_them() -> None:
    schema = OpenAPI().field_schema("", "v1", "ConfigMap")
    live = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}}
    apply.record_update(None, live, "helm", "", schema)
    with pytest.raises(apply.ApplyConflictError) as raised:
        apply.apply(live, {**live, "data": {"a": "9", "b": "8"}}, "kubectl", force=False, schema=schema)
    assert str(raised.value).startswith('Apply failed with 2 conflicts: conflicts with "helm" using v1 at ')
    assert str(raised.value).endswith("- .data.a\n- .data.b")
    causes = raised.value.status()["details"]["causes"]
    assert [(c["reason"], c["field"]) for c in causes] == [
        ("FieldManagerConflict", ".data.a"),
        ("FieldManagerConflict", ".data.b"),
    ]
    paths = apply.fields_of(
        {"spec": {"containers": [{"name": "x", "image": "i"}]}}, OpenAPI().field_schema("", "v1", "Pod")
    )
    assert apply.decode(apply.encode(paths)) == paths
    assert apply.path_text(sorted(paths)[-1]) == '.spec.containers[name="x"].name'


def test_discovery_lists_subresources_without_the_parents_names() -> None:
    kinds = {
        resource(group="kubetrader.io", version="v1alpha1", plural="backtests"): ResourceInfo(
            kind="Backtest",
            singular="backtest",
            namespaced=True,
            verbs={"get"},
            shortnames={"bt"},
            categories={"kubetrader"},
            subresources={"status"},
        )
    }
    listed = discovery.api_resource_list(kinds, "kubetrader.io", "v1alpha1")
    assert listed is not None
    assert listed["resources"][1] == {
        "name": "backtests/status",
        "singularName": "",
        "namespaced": True,
        "kind": "Backtest",
        "verbs": ["get", "patch", "update"],
    }
    assert discovery.wants_aggregated(
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    )
    assert not discovery.wants_aggregated("application/json")


def test_core_events_convert_to_events_v1_and_back() -> None:
    core = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "e"},
        "involvedObject": {"name": "bt"},
        "message": "done",
        "count": 2,
        "source": {"component": "op"},
    }
    v1 = events.to_events_v1(core)
    assert (v1["regarding"], v1["note"], v1["deprecatedCount"], v1["reportingController"]) == (
        {"name": "bt"},
        "done",
        2,
        "op",
    )
    assert events.to_core(v1)["involvedObject"] == {"name": "bt"} and events.to_core(v1)["message"] == "done"
