"""The API's promises: tokens where they must be, no secret in any response, no 500 on any input,
submissions validated and run (locally, in a cluster, or through the work queue)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.fixtures.dashboard import (
    API_TOKEN,
    DASHBOARD_RUNS,
    SESSION_SECRET,
    RunningApi,
    backtest_document,
    dashboard_settings,
)
from tests.helpers import wait_until

pytestmark = pytest.mark.xdist_group("dashboard")

REDIS_PASSWORD = "redis-pw-Zx81kq"
PG_PASSWORD = "pg-pw-Qw77ru"
RUNNER_TOKEN = "runner-tok-Lm42"


def _client(tmp_path: Path, **extra: Any) -> TestClient:
    from kubetrader_dashboard.api.main import create_app

    (tmp_path / "results" / "backtests").mkdir(parents=True, exist_ok=True)
    return TestClient(create_app(dashboard_settings(tmp_path / "results", None, None, **extra)))


def _get_paths(client: TestClient, ids: dict[str, str]) -> list[str]:
    """Every GET path of the OpenAPI schema, path parameters filled from `ids`."""
    paths = []
    for path, item in client.get("/api/v1/openapi.json").json()["paths"].items():
        if "get" in item:
            filled = path
            for name, value in ids.items():
                filled = filled.replace("{" + name + "}", value)
            paths.append(filled)
    return paths


def test_a_placeholder_or_short_token_is_refused_outside_development() -> None:
    from pydantic import ValidationError

    from kubetrader_dashboard.settings import Settings

    with pytest.raises(ValidationError, match="KUBETRADER_API_TOKEN"):
        Settings(environment="production", api_token="changethis")
    with pytest.raises(ValidationError, match="too short"):
        Settings(environment="production", api_token="short")
    assert Settings(environment="development").api_token is None, "no machine token unless one is set"
    with pytest.raises(ValidationError, match="KUBETRADER_SESSION_SECRET"):
        Settings(environment="production", users_file="users.yaml", session_secret="short")


def test_state_changing_endpoints_require_the_bearer_token(tmp_path: Path) -> None:
    document = backtest_document(*DASHBOARD_RUNS[0])
    with _client(tmp_path) as client:
        for path in ("/api/v1/backtests", "/api/v1/studies"):
            missing = client.post(path, json=document)
            assert missing.status_code == 401
            assert missing.headers["content-type"] == "application/problem+json"
            assert missing.headers["www-authenticate"] == "Bearer"
            wrong = client.post(path, json=document, headers={"Authorization": "Bearer " + API_TOKEN[:-1] + "x"})
            assert wrong.status_code == 401


def test_read_endpoints_need_the_token_when_public_read_is_off(tmp_path: Path) -> None:
    with _client(tmp_path, public_read=False) as client:
        paths = _get_paths(client, {"result_id": "x", "name": "x", "submission_id": "x", "plural": "backtests"})
        for path in paths:
            expected = 200 if path == "/api/v1/healthz" else 401  # the probes' "the process answers"
            assert client.get(path).status_code == expected, path
        assert client.get("/api/v1/healthz").json() == {"status": "ok"}
        authorized = client.get("/api/v1/backtests", headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert authorized.status_code == 200


def test_no_response_contains_a_secret(tmp_path: Path, dashboard_results: Any) -> None:
    import shutil

    extra = {
        "redis_url": f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0",
        "mlflow_tracking_uri": f"postgresql://mlflow:{PG_PASSWORD}@127.0.0.1:1/mlflow",
        "optuna_storage": f"postgresql://optuna:{PG_PASSWORD}@127.0.0.1:1/optuna",
        "live_runner_url": f"http://runner:{RUNNER_TOKEN}@127.0.0.1:1",
    }
    (tmp_path / "results").mkdir()
    shutil.copytree(dashboard_results.results_dir / "backtests", tmp_path / "results" / "backtests")
    result_id = dashboard_results.result_ids[0]
    # The machine token as a trader, so /live (the runner's URL carries a secret) answers too.
    with _client(tmp_path, api_token_role="trader", **extra) as client:
        paths = _get_paths(client, {"result_id": result_id, "name": "s", "submission_id": "x", "plural": "backtests"})
        bodies = [client.get(path, headers={"Authorization": f"Bearer {API_TOKEN}"}) for path in paths]
        bodies.append(client.get("/api/v1/mlflow/compare", params={"run_id": ["a", "b"]}))
        bodies.append(
            client.post(
                "/api/v1/backtests", json={"apiVersion": "v0"}, headers={"Authorization": f"Bearer {API_TOKEN}"}
            )
        )
        settings_view = client.get("/api/v1/settings").json()
    assert {b.status_code for b in bodies} <= {200, 404, 422, 503}
    for response in bodies:
        for secret in (API_TOKEN, REDIS_PASSWORD, PG_PASSWORD, RUNNER_TOKEN, SESSION_SECRET):
            assert secret not in response.text, f"{response.url} leaks a secret"
    shown = {entry["name"]: entry["value"] for entry in settings_view["entries"]}
    assert shown["api_token"] == "********"
    assert shown["redis_url"] == "redis://***@127.0.0.1:1/0"
    assert shown["mlflow_tracking_uri"] == "postgresql://***@127.0.0.1:1/mlflow"


def test_an_invalid_backtest_is_a_422_naming_the_field(tmp_path: Path) -> None:
    document = backtest_document(*DASHBOARD_RUNS[0])
    bad_end = copy.deepcopy(document)
    bad_end["spec"]["data"]["end"] = "2011-01-01"
    typo = copy.deepcopy(document)
    typo["spec"]["broker"]["cassh"] = 1
    wrong_kind = copy.deepcopy(document)
    wrong_kind["kind"] = "OptimizationStudy"
    bad_name = copy.deepcopy(document)
    bad_name["metadata"]["name"] = "Not_A_Name"
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    with _client(tmp_path) as client:
        fields = {}
        for label, body in (("end", bad_end), ("typo", typo), ("kind", wrong_kind), ("name", bad_name)):
            response = client.post("/api/v1/backtests", json=body, headers=headers)
            assert response.status_code == 422, label
            assert response.headers["content-type"] == "application/problem+json"
            fields[label] = [e["field"] for e in response.json()["errors"]]
    assert fields["end"] == ["spec.data"]
    assert fields["typo"] == ["spec.broker.cassh"]
    assert fields["kind"] == ["kind"]
    assert fields["name"] == ["metadata.name"]


def test_a_submitted_backtest_runs_locally_and_its_result_is_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The engine keeps its data store under KUBETRADER_DATA_DIR; the worker process inherits it.
    monkeypatch.setenv("KUBETRADER_DATA_DIR", str(tmp_path / "data"))
    document = backtest_document(
        "submitted-sma", "strategies.sma_crossover.SMACrossover", {"fast": 5, "slow": 20}, ["ORCL"], "Demo", "Trend"
    )
    document["spec"]["data"]["start"] = "2014-01-01"
    document["spec"]["tracking"]["enabled"] = False
    with _client(tmp_path) as client:
        accepted = client.post("/api/v1/backtests", json=document, headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert accepted.status_code == 202
        assert accepted.json()["target"] == "local"
        submission = accepted.json()["id"]

        def finished() -> dict[str, Any]:
            state: dict[str, Any] = client.get(f"/api/v1/submissions/{submission}").json()
            return state if state["state"] in ("succeeded", "failed") else {}

        state: dict[str, Any] = wait_until(finished, timeout=90, interval=0.2, what="the submitted backtest to finish")
        assert state["state"] == "succeeded", state["error"]
        (result_id,) = state["result_ids"]
        listed = client.get("/api/v1/backtests", params={"name": "submitted-sma"}).json()
        assert [item["id"] for item in listed["items"]] == [result_id]
        assert client.get(f"/api/v1/backtests/{result_id}/equity").json()["dates"][0].startswith("2014-01")


def test_in_a_cluster_a_submission_creates_the_custom_resource(
    tmp_path: Path, kube_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    document = backtest_document(*DASHBOARD_RUNS[0])
    with _client(tmp_path, kubernetes="auto") as client:
        accepted = client.post("/api/v1/backtests", json=document, headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["target"] == "cluster"
        created = kube_cluster.get("Backtest", "default", document["metadata"]["name"])
        assert created["spec"]["strategy"] == document["spec"]["strategy"]
        listed = client.get("/api/v1/cluster/backtests").json()
        assert listed["available"] is True
        assert [item["name"] for item in listed["items"]] == [document["metadata"]["name"]]
        health = {c["name"]: c["status"] for c in client.get("/api/v1/health").json()["components"]}
        assert health["kubernetes"] == "ok"


def test_with_redis_a_campaign_is_enqueued_and_the_queue_reports_it(tmp_path: Path, redis_url: str) -> None:
    document = backtest_document(*DASHBOARD_RUNS[0])
    document["spec"]["matrix"] = {"params": {"fast": [5, 10, 15]}}
    with _client(tmp_path, redis_url=redis_url) as client:
        accepted = client.post("/api/v1/backtests", json=document, headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert accepted.status_code == 202, accepted.text
        body = accepted.json()
        assert body["target"] == "queue" and len(body["result_ids"]) == 3
        queue = client.get("/api/v1/queue").json()
        assert queue["available"] is True
        assert queue["stats"]["pending"] == 3
        assert [b["total"] for b in queue["stats"]["batches"]] == [3]
        state = client.get(f"/api/v1/submissions/{body['id']}").json()
        assert state["state"] == "queued"
        health = {c["name"]: c for c in client.get("/api/v1/health").json()["components"]}
        assert health["redis"]["status"] == "ok"


FUZZ_EXAMPLES = 12


def test_fuzzed_requests_never_cause_a_server_error(dashboard_api: RunningApi) -> None:
    """Every operation of the OpenAPI schema, with generated parameters and bodies: no 500, and
    every answer matches its declared response model. With the token, so fuzzed documents reach
    validation instead of stopping at 401."""
    from hypothesis import given

    schema = schemathesis.openapi.from_url(dashboard_api.url + "/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {dashboard_api.token}"}
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            case.call_and_validate(
                base_url=dashboard_api.url,
                headers=headers,
                checks=[not_a_server_error, response_schema_conformance],
            )

        fuzz()


def test_schema_lists_every_resource(dashboard_api: RunningApi) -> None:
    paths = httpx.get(dashboard_api.url + "/api/v1/openapi.json").json()["paths"]
    for prefix in ("backtests", "trades", "rankings", "studies", "live", "mlflow", "queue", "health", "settings"):
        assert any(p.startswith(f"/api/v1/{prefix}") for p in paths), prefix


def test_the_cli_s_up_front_checks_refuse_a_backtest_before_202_without_a_server_path(tmp_path: Path) -> None:
    document = backtest_document(*DASHBOARD_RUNS[0])
    typo = copy.deepcopy(document)
    typo["spec"]["strategy"]["params"] = {"fsat": 10}
    unknown = copy.deepcopy(document)
    unknown["spec"]["data"]["symbols"] = ["ORCX"]
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    with _client(tmp_path) as client:
        for bad, field, words in (
            (typo, "spec.strategy.params.fsat", "unknown parameter of SMACrossover (did you mean 'fast'?)"),
            (unknown, "spec.data.symbols.0", "unknown symbol 'ORCX'"),
        ):
            response = client.post("/api/v1/backtests", json=bad, headers=auth)
            assert response.status_code == 422, response.text
            (error,) = response.json()["errors"]
            assert error["field"] == field and words in error["message"], error
            assert str(tmp_path) not in response.text and "store:" not in response.text
        study = {
            "apiVersion": "kubetrader.io/v1alpha1",
            "kind": "OptimizationStudy",
            "metadata": {"name": "s"},
            "spec": {
                "backtest": {"strategy": {"path": "strategies.sma_crossover.SMACrossover"},
                             "data": {"symbols": ["ORCX"], "start": "2012-01-01", "end": "2014-12-31"}},
                "space": {"fast": {"type": "int", "low": 5, "high": 20}},
                "objective": {"metric": "sharpe_ratio"},
                "trials": 2,
            },
        }  # fmt: skip
        response = client.post("/api/v1/studies", json=study, headers=auth)
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "spec.data.symbols.0"


def test_a_yaml_body_is_refused_saying_what_the_endpoint_takes(tmp_path: Path) -> None:
    import yaml

    text = yaml.safe_dump(backtest_document(*DASHBOARD_RUNS[0]))
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    with _client(tmp_path) as client:
        for content_type in ("application/yaml", "application/json"):
            response = client.post("/api/v1/backtests", content=text, headers={**auth, "Content-Type": content_type})
            assert response.status_code == 422, response.text
            (error,) = response.json()["errors"]
            assert error["field"] == "body" and "as JSON" in error["message"] and content_type in error["message"]


def test_openapi_declares_the_bearer_token_only_on_routes_that_need_it(tmp_path: Path) -> None:
    with _client(tmp_path) as client:
        paths = client.get("/api/v1/openapi.json").json()["paths"]
    for path, item in paths.items():
        for method, operation in item.items():
            secured = bool(operation.get("security"))
            needs = method != "get" and path != "/api/v1/auth/login"  # signing in is how one gets a token
            assert secured == needs, f"{method.upper()} {path}: security {operation.get('security')}"
