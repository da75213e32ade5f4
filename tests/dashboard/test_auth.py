"""Who may call the API: the built-in login, OIDC ID tokens from the auth proxy, the machine token,
and what each role may do (viewer reads, researcher submits, trader sees live trading)."""

from __future__ import annotations

import copy
import http.server
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.fixtures.dashboard import (
    API_TOKEN,
    DASHBOARD_RUNS,
    USERS,
    backtest_document,
    dashboard_settings,
    sign_in,
)
from tests.helpers import free_port

pytestmark = pytest.mark.xdist_group("dashboard")

ISSUER_PATH = "/realms/kubetrader"
CLIENT_ID = "kubetrader-dashboard"


def _app(tmp_path: Path, users_file: Path | None, **extra: Any) -> TestClient:
    from kubetrader_dashboard.api.main import create_app

    (tmp_path / "results" / "backtests").mkdir(parents=True, exist_ok=True)
    return TestClient(create_app(dashboard_settings(tmp_path / "results", None, None, users_file, **extra)))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _unrunnable_backtest() -> dict[str, Any]:
    """A Backtest that passes authorization and fails the API's own checks (an unknown symbol):
    a 422 says the caller was let in, without running anything."""
    document = backtest_document(*DASHBOARD_RUNS[0])
    document["spec"]["data"]["symbols"] = ["ORCX"]
    return document


def _study_of(backtest: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kubetrader.io/v1alpha1",
        "kind": "OptimizationStudy",
        "metadata": {"name": "auth-study"},
        "spec": {
            "backtest": {"strategy": {"path": backtest["spec"]["strategy"]["path"]}, "data": backtest["spec"]["data"]},
            "space": {"fast": {"type": "int", "low": 5, "high": 20}},
            "objective": {"metric": "sharpe_ratio"},
            "trials": 2,
        },
    }


# -- the built-in login -------------------------------------------------------------------------
def test_signing_in_gives_a_session_that_carries_the_users_role(tmp_path: Path, dashboard_users: Path) -> None:
    with _app(tmp_path, dashboard_users, public_read=False) as client:
        assert client.get("/api/v1/auth/me").status_code == 401
        wrong = client.post("/api/v1/auth/login", json={"username": "rita", "password": "not-it"})
        unknown = client.post("/api/v1/auth/login", json={"username": "nobody", "password": "x"})
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.json()["detail"] == unknown.json()["detail"] == "wrong user name or password"
        token = sign_in(client, "researcher")
        assert token.startswith("kts1.") and USERS["rita"][1] not in token
        assert client.get("/api/v1/auth/me", headers=_bearer(token)).json() == {
            "name": "rita",
            "role": "researcher",
            "method": "session",
        }
        assert client.get("/api/v1/backtests", headers=_bearer(token)).status_code == 200
        assert client.get("/api/v1/backtests", headers=_bearer(token[:-2] + "xx")).status_code == 401


def test_a_session_ends_when_it_expires_or_its_user_is_removed(
    tmp_path: Path, dashboard_users: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubetrader_dashboard.auth.users import UsersFile, read_users, write_users

    users_file = tmp_path / "users.yaml"
    users_file.write_bytes(dashboard_users.read_bytes())
    with _app(tmp_path, users_file, public_read=False, session_ttl_seconds=3600) as client:
        fresh = sign_in(client, "trader")
        real_time = time.time
        monkeypatch.setattr(time, "time", lambda: real_time() - 7200)  # itsdangerous stamps with time.time()
        old = sign_in(client, "trader")
        monkeypatch.setattr(time, "time", real_time)
        assert client.get("/api/v1/auth/me", headers=_bearer(old)).status_code == 401, "issued two hours ago"
        assert client.get("/api/v1/auth/me", headers=_bearer(fresh)).status_code == 200
        users = read_users(users_file).users
        del users["theo"]
        write_users(users_file, UsersFile(users=users))
        assert client.get("/api/v1/auth/me", headers=_bearer(fresh)).status_code == 401, "theo was removed"


def test_sign_in_attempts_are_rate_limited(tmp_path: Path, dashboard_users: Path) -> None:
    with _app(tmp_path, dashboard_users, login_rate_limit=3) as client:
        codes = [
            client.post("/api/v1/auth/login", json={"username": "rita", "password": f"guess-{n}"}).status_code
            for n in range(4)
        ]
        assert codes == [401, 401, 401, 429]
        refused = client.post("/api/v1/auth/login", json={"username": "rita", "password": USERS["rita"][1]})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1


# -- roles ---------------------------------------------------------------------------------------
def test_a_viewer_reads_but_cannot_submit_and_a_researcher_submits(tmp_path: Path, dashboard_users: Path) -> None:
    backtest = _unrunnable_backtest()
    with _app(tmp_path, dashboard_users, public_read=False) as client:
        viewer, researcher = sign_in(client, "viewer"), sign_in(client, "researcher")
        assert client.get("/api/v1/backtests", headers=_bearer(viewer)).status_code == 200
        for path, document in (("/api/v1/backtests", backtest), ("/api/v1/studies", _study_of(backtest))):
            refused = client.post(path, json=document, headers=_bearer(viewer))
            assert refused.status_code == 403, refused.text
            assert refused.json()["detail"] == "vera is a viewer; this needs the researcher role"
            let_in = client.post(path, json=document, headers=_bearer(researcher))
            assert let_in.status_code == 422 and let_in.json()["errors"][0]["field"] == "spec.data.symbols.0"


def test_live_trading_needs_the_trader_role_even_when_reads_are_public(tmp_path: Path, dashboard_users: Path) -> None:
    """The runner's /status and /journal (positions, orders, PnL) are token-protected at the runner;
    the API must not hand them to anyone who asks (it did: reads were public by default)."""
    with _app(tmp_path, dashboard_users, public_read=True) as client:
        anonymous = client.get("/api/v1/live")
        assert anonymous.status_code == 401, anonymous.text
        assert client.get("/api/v1/cluster/livedeployments").status_code == 401
        researcher, trader = sign_in(client, "researcher"), sign_in(client, "trader")
        assert client.get("/api/v1/live", headers=_bearer(researcher)).status_code == 403
        assert client.get("/api/v1/cluster/livedeployments", headers=_bearer(researcher)).status_code == 403
        assert client.get("/api/v1/live", headers=_bearer(trader)).status_code == 200
        assert client.get("/api/v1/cluster/livedeployments", headers=_bearer(trader)).status_code == 200
        assert client.get("/api/v1/cluster/backtests").status_code == 200, "other reads stay public here"


def test_the_machine_token_carries_its_own_role(tmp_path: Path) -> None:
    with _app(tmp_path, None, public_read=False, api_token_role="viewer") as client:
        assert client.get("/api/v1/auth/me", headers=_bearer(API_TOKEN)).json() == {
            "name": "machine",
            "role": "viewer",
            "method": "token",
        }
        refused = client.post("/api/v1/backtests", json=_unrunnable_backtest(), headers=_bearer(API_TOKEN))
        assert refused.status_code == 403
        no_login = client.post("/api/v1/auth/login", json={"username": "rita", "password": USERS["rita"][1]})
        assert no_login.status_code == 404, "no users file: no built-in login"


def test_the_placeholder_token_is_warned_about_in_development(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from kubetrader_dashboard.api.main import create_app
    from kubetrader_dashboard.settings import Settings

    (tmp_path / "results").mkdir()
    settings = Settings(
        environment="development", api_token="changethis", local_defaults=False, results_dir=tmp_path / "results",
        kubernetes="off", public_read=False,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="kubetrader_dashboard.auth.authenticator"):
        app = create_app(settings)
        assert any("placeholder 'changethis'" in r.getMessage() for r in caplog.records), caplog.text
        caplog.clear()
        with TestClient(app) as client:
            assert client.get("/api/v1/auth/me", headers=_bearer("changethis")).status_code == 200
        assert [r.getMessage() for r in caplog.records] == ["a request used the placeholder machine token 'changethis'"]


# -- submissions: only metadata a user may set ---------------------------------------------------
@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"annotations": {"kubetrader.io/memory": "512Gi"}}, "metadata.annotations.kubetrader.io/memory"),
        ({"annotations": {"kopf.zalando.org/touch-dummy": "1"}}, "metadata.annotations.kopf.zalando.org/touch-dummy"),
        ({"labels": {"app.kubernetes.io/name": "kubetrader-operator"}}, "metadata.labels.app.kubernetes.io/name"),
        ({"namespace": "trading"}, "metadata.namespace"),
        ({"finalizers": ["x"]}, "metadata.finalizers"),
    ],
)  # fmt: skip
def test_a_submission_may_not_set_the_platforms_metadata(
    tmp_path: Path, dashboard_users: Path, metadata: dict[str, Any], field: str
) -> None:
    document = copy.deepcopy(backtest_document(*DASHBOARD_RUNS[0]))
    document["metadata"].update(metadata)
    with _app(tmp_path, dashboard_users) as client:
        refused = client.post("/api/v1/backtests", json=document, headers=_bearer(sign_in(client, "researcher")))
    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == [field]


def test_in_a_cluster_the_resource_is_built_from_the_validated_models_and_names_its_submitter(
    tmp_path: Path, dashboard_users: Path, kube_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    document = backtest_document(*DASHBOARD_RUNS[0])
    document["metadata"].update(
        annotations={"team": "quant-research"}, labels={"desk": "equities", "kubetrader.io/helm-test": "true"}
    )
    document["spec"]["strategy"]["params"] = {"fast": 10, "slow": 30}
    with _app(tmp_path, dashboard_users, kubernetes="auto") as client:
        accepted = client.post("/api/v1/backtests", json=document, headers=_bearer(sign_in(client, "researcher")))
    assert accepted.status_code == 202, accepted.text
    created = kube_cluster.get("Backtest", "default", document["metadata"]["name"])
    assert created["metadata"]["annotations"] == {"team": "quant-research", "kubetrader.io/submitted-by": "rita"}
    assert created["metadata"]["labels"] == {"desk": "equities", "kubetrader.io/helm-test": "true"}
    assert created["spec"]["strategy"] == {
        "path": document["spec"]["strategy"]["path"],
        "params": {"fast": 10, "slow": 30},
    }


# -- OIDC through the auth proxy -----------------------------------------------------------------
class _Issuer:
    """An OIDC issuer on a loopback port: its discovery document and JWKS, and tokens it signs."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa
        from jwt.algorithms import RSAAlgorithm

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid="key-1", use="sig", alg="RS256")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{ISSUER_PATH}"
        documents = {
            f"{ISSUER_PATH}/.well-known/openid-configuration": {
                "issuer": self.url,
                "jwks_uri": f"{self.url}/protocol/openid-connect/certs",
            },
            f"{ISSUER_PATH}/protocol/openid-connect/certs": {"keys": [jwk]},
        }

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = documents.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body or {}).encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def token(self, *, key: Any = None, algorithm: str = "RS256", **claims: Any) -> str:
        import jwt

        now = int(time.time())
        body = {"iss": self.url, "aud": CLIENT_ID, "sub": "u-1", "email": "ada@example.com", "iat": now,
                "exp": now + 300, **claims}  # fmt: skip
        return jwt.encode(body, key or self.key, algorithm=algorithm, headers={"kid": "key-1"})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def issuer() -> Iterator[_Issuer]:
    running = _Issuer()
    yield running
    running.close()


@pytest.fixture
def oidc_client(tmp_path: Path, issuer: _Issuer) -> Iterator[TestClient]:
    with _app(
        tmp_path,
        None,
        public_read=False,
        oidc_issuer=issuer.url,
        oidc_audience=CLIENT_ID,
        oidc_researcher_groups=["quants"],
        oidc_trader_groups=["trading-desk"],
    ) as client:
        yield client


def test_an_id_token_from_the_issuer_signs_in_with_the_role_of_its_groups(
    oidc_client: TestClient, issuer: _Issuer
) -> None:
    def me(token: str) -> Any:
        return oidc_client.get("/api/v1/auth/me", headers=_bearer(token))

    assert me(issuer.token(groups=["quants"])).json() == {"name": "ada@example.com", "role": "researcher",
                                                           "method": "oidc"}  # fmt: skip
    assert me(issuer.token(groups=["quants", "trading-desk"])).json()["role"] == "trader"
    researcher = issuer.token(groups=["quants"])
    submitted = oidc_client.post("/api/v1/backtests", json=_unrunnable_backtest(), headers=_bearer(researcher))
    assert submitted.status_code == 422, "let in (then refused for the unknown symbol)"
    assert oidc_client.get("/api/v1/live", headers=_bearer(researcher)).status_code == 403


def test_the_api_trusts_no_identity_header_and_no_token_it_cannot_verify(
    oidc_client: TestClient, issuer: _Issuer
) -> None:
    import jwt

    from kubetrader_dashboard.auth.oidc import ALGORITHMS

    forged_headers = {"X-Forwarded-User": "ada", "X-Forwarded-Email": "ada@example.com",
                      "X-Forwarded-Groups": "trading-desk", "X-Forwarded-Preferred-Username": "ada"}  # fmt: skip
    assert oidc_client.get("/api/v1/auth/me", headers=forged_headers).status_code == 401
    now = int(time.time())
    bad = {
        "wrong audience": issuer.token(aud="another-client", groups=["quants"]),
        "wrong issuer": issuer.token(iss="http://127.0.0.1:1/evil", groups=["quants"]),
        "expired": issuer.token(iat=now - 7200, exp=now - 3600, groups=["quants"]),
        "another key": issuer.token(key=issuer.other_key, groups=["quants"]),
        "no groups with a role": issuer.token(groups=["marketing"]),
        "alg none": jwt.encode({"iss": issuer.url, "aud": CLIENT_ID, "sub": "x", "iat": now, "exp": now + 300,
                                "groups": ["trading-desk"]}, None, algorithm="none", headers={"kid": "key-1"}),
    }  # fmt: skip
    # HMAC "signed" with the public key (algorithm confusion) cannot pass: no symmetric algorithm is accepted.
    assert not [a for a in ALGORITHMS if a.startswith("HS") or a == "none"]
    for label, token in bad.items():
        answer = oidc_client.get("/api/v1/auth/me", headers=_bearer(token))
        assert answer.status_code == 401, label
