"""A small typed client of the REST API: the only way the Streamlit app reaches data.

It parses answers into the same response models the API declares, so a change of
shape fails here, loudly, instead of as a blank chart. It carries the signed-in user's
credential (`token`: a session token, or the auth proxy's ID token) and nothing else, and it
submits only documents built from the validated spec models.
"""

from __future__ import annotations

import json
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Literal, TypeVar

import httpx
import streamlit as st
from pydantic import BaseModel, TypeAdapter

from kubetrader.optimize.robustness import Robustness
from kubetrader.specs.common import GROUP_VERSION, SpecModel
from kubetrader_dashboard.auth.roles import Identity
from kubetrader_dashboard.models.auth import LoginRequest, SessionToken
from kubetrader_dashboard.models.backtests import (
    BacktestDetail,
    BacktestSummary,
    DashboardSummary,
    EquityCurve,
    Rankings,
    Trade,
)
from kubetrader_dashboard.models.common import Page
from kubetrader_dashboard.models.logs import Events, LogSources, LogText
from kubetrader_dashboard.models.mlflow import Comparison, MlflowOverview, RunRow
from kubetrader_dashboard.models.operations import (
    Health,
    LiveState,
    QueueView,
    SettingsView,
    StudyDetail,
    StudyList,
    SubmissionState,
)
from kubetrader_dashboard.models.pages import BacktestsPage, PerformancePage
from kubetrader_dashboard.models.symbols import SymbolSearch

M = TypeVar("M", bound=BaseModel)

# One stored result's own reads (detail, equity, performance, trades) are the same for as long as
# the result is: its id is the spec's hash, and a re-run of the spec writes the same result. So the
# app fetches each once per RESULT_TTL_SECONDS, shared by every page and rerun of the signed-in user
# (the key holds the credential: no user sees another's answers). Lists, summaries, and the state
# of running work are always fetched afresh.
RESULT_TTL_SECONDS = 30.0


class ApiError(RuntimeError):
    """A problem document from the API (or no answer at all)."""

    def __init__(self, status: int, title: str, detail: str | None = None, errors: list[dict[str, Any]] | None = None):
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")
        self.status, self.title, self.detail, self.errors = status, title, detail, errors or []


@st.cache_resource(show_spinner=False)
def _connection_pool(base_url: str) -> httpx.Client:
    """One HTTP client per API for the whole app, shared by every session and rerun.

    A client per rerun cost ~35 ms before its first call (httpx builds an SSL context, reading the
    CA bundle, even for http://) and a new TCP connection for each call. httpx's Client "can be
    shared between threads" (its docstring; encode/httpx#2380). It holds no credential (each
    request carries its user's) and keeps no cookie (a jar whose policy accepts none): nothing of
    one user's may reach another's requests.
    """
    jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    return httpx.Client(base_url=base_url + "/api/v1", cookies=jar, timeout=REQUEST_TIMEOUT_SECONDS)


REQUEST_TIMEOUT_SECONDS = 30.0


class ApiClient:
    def __init__(self, base_url: str, *, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = _connection_pool(self.base_url)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        return json.loads(self._send(method, path, **kwargs))

    def _send(self, method: str, path: str, **kwargs: Any) -> bytes:
        """The answer's body, or `ApiError` with the problem document's title, detail and field errors."""
        try:
            response = self._http.request(method, path, headers=self._headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, "API unreachable", f"{self.base_url}: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {}
            raise ApiError(
                response.status_code,
                str(problem.get("title", response.reason_phrase)),
                problem.get("detail"),
                problem.get("errors"),
            )
        return response.content

    # Answers are validated from their bytes (pydantic's JSON parser), not from json.loads' objects:
    # five times faster on a page's answer (~1.5 ms against ~7 ms for the Backtests page's).
    def _get(self, model: type[M], path: str, **params: Any) -> M:
        clean = {k: v for k, v in params.items() if v not in (None, "")}
        return model.model_validate_json(self._send("GET", path, params=clean))

    def _get_result(self, model: type[M], path: str, **params: Any) -> M:
        """`_get` for a stored result's own reads, through the app's short cache (see RESULT_TTL_SECONDS)."""
        clean = tuple(sorted((k, str(v)) for k, v in params.items() if v not in (None, "")))
        return model.model_validate_json(_cached_get(self, (self.base_url, self._token, path, clean)))

    # -- results -------------------------------------------------------------------------
    def summary(self) -> DashboardSummary:
        return self._get(DashboardSummary, "/summary")

    def backtests(self, **params: Any) -> Page[BacktestSummary]:
        return self._get(Page[BacktestSummary], "/backtests", **params)

    def backtest(self, result_id: str) -> BacktestDetail:
        return self._get_result(BacktestDetail, f"/backtests/{result_id}")

    def equity(self, result_id: str) -> EquityCurve:
        return self._get_result(EquityCurve, f"/backtests/{result_id}/equity")

    def backtests_page(self, **params: Any) -> BacktestsPage:
        """The Backtests page in one call: the list is fresh on each rerun, as every list is."""
        return self._get(BacktestsPage, "/pages/backtests", **params)

    def performance_page(self, result: str | None) -> PerformancePage:
        return self._get(PerformancePage, "/pages/performance", result=result)

    def trades(self, **params: Any) -> Page[Trade]:
        return self._get(Page[Trade], "/trades", **params)

    def symbol_search(self, query: str, *, exchange: str = "US", type_: str | None = None) -> SymbolSearch:
        return self._get(SymbolSearch, "/symbols/search", q=query, exchange=exchange, type=type_)

    def rankings(self, **params: Any) -> Rankings:
        return self._get(Rankings, "/rankings", **params)

    # -- signing in ---------------------------------------------------------------------
    def login(self, username: str, password: str) -> SessionToken:
        body = LoginRequest(username=username, password=password).model_dump()
        return SessionToken.model_validate(self._request("POST", "/auth/login", json=body))

    def me(self) -> Identity:
        return self._get(Identity, "/auth/me")

    # -- work ----------------------------------------------------------------------------
    def submit(self, kind: Literal["Backtest", "OptimizationStudy"], name: str, spec: SpecModel) -> SubmissionState:
        """Submit a validated spec under `name`; the API adds the namespace and who submitted it."""
        document = {"apiVersion": GROUP_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec.to_wire()}
        path = "/studies" if kind == "OptimizationStudy" else "/backtests"
        return SubmissionState.model_validate(self._request("POST", path, json=document))

    def submissions(self) -> list[SubmissionState]:
        return TypeAdapter(list[SubmissionState]).validate_python(self._request("GET", "/submissions"))

    def studies(self) -> StudyList:
        return self._get(StudyList, "/studies")

    def study(self, name: str) -> StudyDetail:
        return self._get(StudyDetail, f"/studies/{name}")

    def study_robustness(self, name: str) -> Robustness:
        return self._get(Robustness, f"/studies/{name}/robustness")

    def live(self) -> LiveState:
        """The live runner's state; for a user below the trader role, "not available" and why."""
        try:
            return self._get(LiveState, "/live")
        except ApiError as exc:
            if exc.status != 403:
                raise
            return LiveState(available=False, reason=exc.detail)

    # -- MLflow, operations -------------------------------------------------------------
    def mlflow_overview(self, **params: Any) -> MlflowOverview:
        return self._get(MlflowOverview, "/mlflow/overview", **params)

    def mlflow_runs(self, **params: Any) -> Page[RunRow]:
        return self._get(Page[RunRow], "/mlflow/runs", **params)

    def mlflow_compare(self, run_ids: list[str]) -> Comparison:
        return self._get(Comparison, "/mlflow/compare", run_id=run_ids)

    def queue(self) -> QueueView:
        return self._get(QueueView, "/queue")

    def health(self) -> Health:
        return self._get(Health, "/health")

    def settings(self) -> SettingsView:
        return self._get(SettingsView, "/settings")

    # -- logs and events -----------------------------------------------------------------
    def logs(self, **params: Any) -> LogSources:
        return self._get(LogSources, "/logs", **params)

    def log(self, key: str, *, tail: int = 500) -> LogText:
        return self._get(LogText, f"/logs/{key}", tail=tail)

    def events(self, **params: Any) -> Events:
        return self._get(Events, "/events", **params)


@st.cache_data(ttl=RESULT_TTL_SECONDS, max_entries=512, show_spinner=False)
def _cached_get(_client: ApiClient, key: tuple[str, str | None, str, tuple[tuple[str, str], ...]]) -> bytes:
    """The body of a GET, cached by (API, credential, path, params); `_client` (not part of
    the key: Streamlit skips arguments named with a leading underscore) only makes the request.
    An error is raised, never cached."""
    _base_url, _token, path, params = key
    return _client._send("GET", path, params=dict(params))
