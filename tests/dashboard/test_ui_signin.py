"""The Streamlit app signs people in and calls the API as them (AppTest against a real API server).

The dashboard's pod used to carry the platform's token and send it with every call, so anyone who
reached the dashboard submitted as the platform; now it carries no credential of its own."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from kubetrader_dashboard.ui.signin import SESSION_KEY
from tests.fixtures.dashboard import USERS, UvicornThread, dashboard_settings, sign_in
from tests.helpers import ROOT, free_port

pytestmark = pytest.mark.xdist_group("dashboard")

APP = ROOT / "dashboard" / "kubetrader_dashboard" / "ui" / "app.py"


@pytest.fixture
def api(
    tmp_path: Path, dashboard_users: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[tuple[str, str]]:
    """An API in production mode with a 32-character machine token, the built-in login, reads public
    (the old chart default) and, for tests that ask for `kube_cluster`, the emulated cluster.
    Yields (url, machine token); the app under test gets FASTAPI_BACKEND_URL."""
    from kubetrader_dashboard.api.main import create_app

    extra: dict[str, Any] = {}
    if "kube_cluster" in request.fixturenames:
        cluster = request.getfixturevalue("kube_cluster")
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
        extra["kubernetes"] = "auto"
    token = secrets.token_hex(16)
    assert len(token) == 32
    (tmp_path / "results" / "backtests").mkdir(parents=True)
    settings = dashboard_settings(tmp_path / "results", None, None, dashboard_users, api_token=token, **extra)
    with UvicornThread(create_app(settings), free_port()) as server:
        url = f"http://127.0.0.1:{server.server.config.port}"
        monkeypatch.setenv("FASTAPI_BACKEND_URL", url)
        yield url, token


def _submissions(url: str, token: str) -> list[Any]:
    answer = httpx.get(url + "/api/v1/submissions", headers={"Authorization": f"Bearer {token}"})
    answer.raise_for_status()
    listed: list[Any] = answer.json()
    return listed


def _button(at: AppTest, label: str) -> Any:
    return next(b for b in at.button if b.label == label)


def test_a_visitor_who_has_not_signed_in_submits_nothing_even_with_the_platform_token_in_the_environment(
    api: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, token = api
    # What the dashboard's pod had: the platform's token in its environment, production mode.
    monkeypatch.setenv("KUBETRADER_API_TOKEN", token)
    monkeypatch.setenv("KUBETRADER_ENVIRONMENT", "production")
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    pages = [r for r in at.radio if r.key == "page"]
    if pages:  # the dashboard let the visitor in: try what the review did, submit the form's Backtest
        at.radio(key="page").set_value("Backtests").run()
        _button(at, "Submit").click().run()
    assert _submissions(url, token) == [], "a Backtest was submitted for someone who never signed in"
    assert not pages, "the pages are shown before signing in"
    assert [b.label for b in at.button] == ["Sign in"]
    assert [e.value for e in at.exception] == []


def test_signing_in_through_the_form_submits_as_that_user(api: tuple[str, str], kube_cluster: Any) -> None:
    url, token = api
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.text_input(key="signin-user").input("rita")
    at.text_input(key="signin-password").input("wrong")
    _button(at, "Sign in").click().run()
    assert [w.value for w in at.warning] == ["Not signed in (401 Unauthorized): wrong user name or password"]
    at.text_input(key="signin-password").input(USERS["rita"][1])
    _button(at, "Sign in").click().run()
    assert any("Signed in as **rita** (researcher)" in c.value for c in at.caption)
    at.radio(key="page").set_value("Backtests").run()
    _button(at, "Submit").click().run()
    assert [e.value for e in at.exception] == []
    # (The success message is not asserted: the list of running submissions reruns the page at once.)
    listed = [f.value for f in at.dataframe if "target" in f.value.columns]  # the submissions table
    assert [list(f["name"]) for f in listed] == [["sma-orcl"]], "the submission just made is listed"
    created = kube_cluster.get("Backtest", "default", "sma-orcl")
    assert created["metadata"]["annotations"] == {"kubetrader.io/submitted-by": "rita"}
    assert [s["name"] for s in _submissions(url, token)] == ["sma-orcl"]
    _button(at, "Sign out").click().run()
    assert [b.label for b in at.button] == ["Sign in"]


def test_a_viewer_is_refused_submitting_and_is_told_live_trading_needs_a_trader(api: tuple[str, str]) -> None:
    url, token = api
    at = AppTest.from_file(str(APP), default_timeout=120)
    with httpx.Client(base_url=url) as client:
        at.session_state[SESSION_KEY] = sign_in(client, "viewer")
    at.run()
    at.radio(key="page").set_value("Backtests").run()
    _button(at, "Submit").click().run()
    assert [w.value for w in at.warning] == [
        "Refused (403 Forbidden): vera is a viewer; this needs the researcher role"
    ]
    assert _submissions(url, token) == []
    at.radio(key="page").set_value("Live Trading").run()
    assert [i.value for i in at.info] == ["Live trading not available: vera is a viewer; this needs the trader role"]
    assert [e.value for e in at.error] == []


def test_the_form_validates_the_spec_with_the_engines_model_before_sending(api: tuple[str, str]) -> None:
    url, token = api
    at = AppTest.from_file(str(APP), default_timeout=120)
    with httpx.Client(base_url=url) as client:
        at.session_state[SESSION_KEY] = sign_in(client, "researcher")
    at.run()
    at.radio(key="page").set_value("Backtests").run()
    spec = json.dumps({
        "strategy": {"path": "strategies.sma_crossover.SMACrossover"},
        "data": {"symbols": ["ORCL"], "start": "2012-01-01", "end": "2014-12-31"},
        "metadata": {"annotations": {"kubetrader.io/cpu": "64"}},  # not a spec field: refused in the UI
    })  # fmt: skip
    next(t for t in at.text_area if t.label == "Spec (JSON)").input(spec)
    _button(at, "Submit").click().run()
    (warning,) = [w.value for w in at.warning]
    assert warning.startswith("Refused: spec.metadata: Extra inputs are not permitted"), warning
    assert _submissions(url, token) == []
