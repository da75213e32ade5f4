"""The Backtests tab's symbol search (issue 24): Finnhub through the API, as the CLI does it.

Against the local server shaped like Finnhub (tests/unit/finnhub_double.py); no test reaches
the internet. The API answers what `kubetrader symbols search --json` prints, shares the CLI's
cache, never waits out a 429 inside a request, and never shows the key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from streamlit.testing.v1 import AppTest

from kubetrader.cli.main import main
from tests.fixtures.dashboard import API_TOKEN, UvicornThread, dashboard_settings, sign_in
from tests.helpers import ROOT, free_port
from tests.unit.finnhub_double import KEY, FinnhubDouble

pytestmark = pytest.mark.xdist_group("dashboard")

APP = ROOT / "dashboard" / "kubetrader_dashboard" / "ui" / "app.py"


def _settings(tmp_path: Path, users_file: Path | None = None, **extra: Any) -> Any:
    (tmp_path / "results" / "backtests").mkdir(parents=True, exist_ok=True)
    return dashboard_settings(tmp_path / "results", None, None, users_file, data_dir=tmp_path / "data", **extra)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    from kubetrader_dashboard.api.main import create_app

    with TestClient(create_app(_settings(tmp_path))) as client:
        yield client


def _search(api: TestClient, **params: str) -> dict[str, Any]:
    response = api.get("/api/v1/symbols/search", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_api_answers_what_the_cli_prints_and_shares_its_cache(
    finnhub: FinnhubDouble, api: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    body = _search(api, q="apple", type="Common Stock")
    assert body["available"] is True and body["query"] == "apple" and body["exchange"] == "US"
    assert [m["symbol"] for m in body["items"]] == ["AAPL"]
    asked = len(finnhub.requests)
    assert asked == 2  # /search and /stock/symbol

    main(["symbols", "search", "apple", "--type", "Common Stock", "--json"])  # exits only on an error
    assert json.loads(capsys.readouterr().out) == body["items"]  # the same matches, field for field
    assert len(finnhub.requests) == asked  # answered from the cache the API wrote


def test_without_a_key_the_search_says_which_variable_to_set(
    finnhub: FinnhubDouble, api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FINNHUB_API_KEY")
    body = _search(api, q="apple")
    assert body["available"] is False and body["retryable"] is False and body["items"] == []
    assert "FINNHUB_API_KEY" in body["reason"]
    assert finnhub.requests == []


def test_a_rate_limit_is_reported_at_once_as_retryable(finnhub: FinnhubDouble, api: TestClient) -> None:
    finnhub.throttle = 5
    finnhub.retry_after = "30"  # the CLI would wait 30 s; a request must not
    body = _search(api, q="apple")
    assert body["available"] is False and body["retryable"] is True
    assert "429" in body["reason"]
    assert len(finnhub.requests) == 1  # asked once, not retried inside the request


def test_a_refused_key_is_named_and_never_shown(
    finnhub: FinnhubDouble, api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINNHUB_API_KEY", "wrong-key-Hq83")
    response = api.get("/api/v1/symbols/search", params={"q": "apple"})
    body = response.json()
    assert body["available"] is False and body["retryable"] is False
    assert "FINNHUB_API_KEY" in body["reason"] and "401" in body["reason"]
    assert "wrong-key-Hq83" not in response.text and KEY not in response.text


@pytest.mark.parametrize(("params", "field"), [({"q": ""}, "q"), ({"q": "apple", "exchange": "us; drop"}, "exchange")])
def test_a_bad_query_is_a_422_naming_the_field(
    finnhub: FinnhubDouble, api: TestClient, params: dict[str, str], field: str
) -> None:
    response = api.get("/api/v1/symbols/search", params=params)
    assert response.status_code == 422
    assert field in json.dumps(response.json()["errors"])
    assert finnhub.requests == []


def test_search_is_a_read_and_needs_the_token_when_public_read_is_off(finnhub: FinnhubDouble, tmp_path: Path) -> None:
    from kubetrader_dashboard.api.main import create_app

    with TestClient(create_app(_settings(tmp_path, public_read=False))) as api:
        assert api.get("/api/v1/symbols/search", params={"q": "apple"}).status_code == 401
        authorized = api.get(
            "/api/v1/symbols/search", params={"q": "apple"}, headers={"Authorization": f"Bearer {API_TOKEN}"}
        )
        assert authorized.status_code == 200 and authorized.json()["items"][0]["symbol"] == "AAPL"


def test_the_backtests_tab_search_box_shows_the_matches(
    finnhub: FinnhubDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dashboard_users: Path
) -> None:
    from kubetrader_dashboard.api.main import create_app
    from kubetrader_dashboard.ui.signin import SESSION_KEY

    with UvicornThread(create_app(_settings(tmp_path, dashboard_users)), free_port()) as server:
        url = f"http://127.0.0.1:{server.server.config.port}"
        monkeypatch.setenv("FASTAPI_BACKEND_URL", url)
        at = AppTest.from_file(str(APP), default_timeout=120)
        with httpx.Client(base_url=url) as client:
            at.session_state[SESSION_KEY] = sign_in(client, "viewer")  # a search is a read
        at.run()
        at.radio(key="page").set_value("Backtests").run()
        at.text_input(key="sym-query").input("apple")
        at.selectbox(key="sym-type").set_value("Common Stock")
        next(b for b in at.button if b.label == "Search").click().run()
        assert [e.value for e in at.exception] == []
        table = next(df.value for df in at.dataframe if "FIGI" in df.value.columns)
        assert table.to_dict("records") == [
            {
                "Symbol": "AAPL",
                "Description": "APPLE INC",
                "Type": "Common Stock",
                "Exchange": "XNAS",
                "Currency": "USD",
                "FIGI": "BBG000B9XRY4",
            }
        ]
        assert any("kubetrader symbols resolve AAPL" in c.value for c in at.caption)
