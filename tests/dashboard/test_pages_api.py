"""GET /pages/backtests and /pages/performance: one answer per page, holding exactly what the
single-purpose endpoints answer (so the page shows the same values as when it made nine calls)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.fixtures.dashboard import API_TOKEN, RunningApi, dashboard_settings, sign_in

pytestmark = pytest.mark.xdist_group("dashboard")


@pytest.fixture
def api(dashboard_api: RunningApi) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dashboard_api.url + "/api/v1", timeout=30) as client:
        yield client


def _get(api: httpx.Client, path: str, **params: Any) -> Any:
    response = api.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_backtests_page_holds_what_the_single_endpoints_answer(api: httpx.Client) -> None:
    page = _get(api, "/pages/backtests")
    assert page["results"] == _get(api, "/backtests", limit=50, offset=0, sort="-finished_at")
    first = page["results"]["items"][0]["id"]
    detail = page["detail"]
    assert detail["id"] == first, "without `detail`, the page's first result"
    document = _get(api, f"/backtests/{first}")
    performance = _get(api, f"/backtests/{first}/performance")
    assert detail["name"] == document["metadata"]["name"]
    assert detail["metrics"] == document["metrics"]
    assert detail["equity"] == _get(api, f"/backtests/{first}/equity")
    assert detail["rolling"] == performance["rolling"]
    research = detail["research"]
    grouped = {name: v for values in performance["metrics"].values() for name, v in values.items()}
    assert research["strategy_metrics"] == grouped
    assert research["benchmark_metrics"] == performance["benchmark_metrics"]
    assert research["top_drawdowns"] == performance["top_drawdowns"]
    assert research["costs"] == performance["costs"]
    assert detail["trades"] == _get(api, f"/backtests/{first}/trades", limit=500)
    assert detail["trades"]["total"] == document["trade_count"]
    assert detail["open_positions"] == _get(api, f"/backtests/{first}/trades", state="open")
    assert detail["open_positions"]["total"] == document["open_positions"]
    best_first = _get(api, "/backtests", limit=200, sort="-sharpe_ratio", status="succeeded")["items"]
    choice_fields = ("id", "name", "strategy", "symbols")
    assert page["compare_choices"] == [{k: b[k] for k in choice_fields} for b in best_first]
    assert page["submissions"] == _get(api, "/submissions")
    assert page["cluster"] == _get(api, "/cluster/backtests")


def test_the_backtests_page_details_the_result_asked_for_when_it_is_on_the_page(
    api: httpx.Client, dashboard_api: RunningApi
) -> None:
    listed = _get(api, "/pages/backtests")["results"]["items"]
    last = listed[-1]["id"]
    assert len(listed) > 1 and last != listed[0]["id"]
    assert _get(api, "/pages/backtests", detail=last)["detail"]["id"] == last
    # Not on this page (another page, or no such result): the page's first, as the select box shows.
    second_page = _get(api, "/pages/backtests", limit=1, offset=1)
    assert second_page["results"]["items"][0]["id"] == listed[1]["id"]
    assert _get(api, "/pages/backtests", limit=1, offset=1, detail=last)["detail"]["id"] == listed[1]["id"]
    assert _get(api, "/pages/backtests", detail="no-such-result")["detail"]["id"] == listed[0]["id"]
    # The list's filters apply; a page with no results has no detail.
    name = next(iter(dashboard_api.stores.documents.values())).metadata.name
    named = _get(api, "/pages/backtests", name=name)
    assert named["results"] == _get(api, "/backtests", name=name)
    assert _get(api, "/pages/backtests", status="failed")["results"] == _get(api, "/backtests", status="failed")
    nothing = _get(api, "/pages/backtests", name="no-such-name")
    assert nothing["results"]["total"] == 0 and nothing["detail"] is None
    assert nothing["compare_choices"] == _get(api, "/pages/backtests")["compare_choices"], "the choices are unfiltered"
    assert (
        _get(api, "/pages/backtests", trades_limit=2)["detail"]["trades"]["items"]
        == (_get(api, f"/backtests/{listed[0]['id']}/trades", limit=2)["items"])
    )


def test_the_performance_page_holds_the_newest_results_and_the_chosen_ones_analytics(api: httpx.Client) -> None:
    page = _get(api, "/pages/performance")
    newest = _get(api, "/backtests", limit=200, sort="-finished_at", status="succeeded")["items"]
    assert page["choices"] == [{k: b[k] for k in ("id", "name", "strategy", "symbols")} for b in newest]
    first = newest[0]["id"]
    assert page["performance"] == _get(api, f"/backtests/{first}/performance")
    assert page["equity"] == _get(api, f"/backtests/{first}/equity")
    other = newest[-1]["id"]
    chosen = _get(api, "/pages/performance", result=other)
    assert chosen["performance"] == _get(api, f"/backtests/{other}/performance")
    assert chosen["equity"]["id"] == other
    assert _get(api, "/pages/performance", result="no-such-result")["performance"]["id"] == first


def test_on_an_empty_store_both_pages_answer_with_nothing_to_show(tmp_path: Path) -> None:
    from kubetrader_dashboard.api.main import create_app

    (tmp_path / "results" / "backtests").mkdir(parents=True)
    with TestClient(create_app(dashboard_settings(tmp_path / "results", None, None))) as client:
        backtests = client.get("/api/v1/pages/backtests").json()
        assert backtests["results"]["total"] == 0 and backtests["detail"] is None
        assert backtests["compare_choices"] == [] and backtests["submissions"] == []
        assert backtests["cluster"]["available"] is False
        assert client.get("/api/v1/pages/performance").json() == {"choices": [], "performance": None, "equity": None}


def test_the_pages_need_a_credential_as_every_read_does(tmp_path: Path, dashboard_users: Path) -> None:
    from kubetrader_dashboard.api.main import create_app

    (tmp_path / "results" / "backtests").mkdir(parents=True)
    settings = dashboard_settings(tmp_path / "results", None, None, dashboard_users, public_read=False)
    with TestClient(create_app(settings)) as client:
        viewer = {"Authorization": f"Bearer {sign_in(client, 'viewer')}"}
        for path in ("/api/v1/pages/backtests", "/api/v1/pages/performance"):
            missing = client.get(path)
            assert missing.status_code == 401, path
            assert missing.headers["content-type"] == "application/problem+json"
            assert missing.headers["www-authenticate"] == "Bearer"
            assert client.get(path, headers={"Authorization": f"Bearer {API_TOKEN[:-1]}x"}).status_code == 401
            assert client.get(path, headers=viewer).status_code == 200, path
            assert client.get(path, headers={"Authorization": f"Bearer {API_TOKEN}"}).status_code == 200, path
    schema = client.get("/api/v1/openapi.json").json()["paths"]
    assert {"/api/v1/pages/backtests", "/api/v1/pages/performance"} <= set(schema)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/pages/backtests", {"limit": 0}, "query.limit"),
        ("/pages/backtests", {"limit": 1001}, "query.limit"),
        ("/pages/backtests", {"offset": -1}, "query.offset"),
        ("/pages/backtests", {"status": "running"}, "query.status"),
        ("/pages/backtests", {"trades_limit": 0}, "query.trades_limit"),
        ("/pages/backtests", {"detail": "x" * 201}, "query.detail"),
        ("/pages/backtests", {"name": "x" * 201}, "query.name"),
        ("/pages/performance", {"result": "x" * 201}, "query.result"),
    ],
)
def test_an_invalid_query_is_a_422_naming_the_field(
    api: httpx.Client, path: str, params: dict[str, Any], field: str
) -> None:
    response = api.get(path, params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]
