"""MLflow behind its own authentication (#21 item 9: no authentication at all): a real
`mlflow server --app-name basic-auth`, started by `kubetrader mlflow serve` as the chart runs
it, refuses anonymous and wrongly signed requests with 401, and our client logs a run with
MLFLOW_TRACKING_USERNAME/PASSWORD from the environment (in the cluster: from a Secret)."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetrader.errors import SpecError
from kubetrader.tracking.auth_server import auth_config_text
from kubetrader.tracking.record import record_backtest
from tests.fixtures.mlflow import MlflowServer, python_environment
from tests.helpers import cli_in_process, free_port
from tests.tracking.documents import write_backtest

USER = "kubetrader"
PASSWORD = secrets.token_urlsafe(24)


class _AuthServer(MlflowServer):
    """`kubetrader mlflow serve` on a free loopback port (reusing MlflowServer's wait and stop)."""

    def __init__(self, backend: str, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = home / "server.log"
        self.config_dir = home / "scratch"
        env = python_environment(
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
            MLFLOW_AUTH_ADMIN_USERNAME=USER,
            MLFLOW_AUTH_ADMIN_PASSWORD=PASSWORD,
            MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16),
            MLFLOW_AUTH_DATABASE_URI=f"sqlite:///{home / 'auth.db'}",
        )
        command = [str(Path(sys.executable).with_name("kubetrader")), "mlflow", "serve"]
        server_args = ["--backend-store-uri", backend, "--artifacts-destination", str(home / "artifacts")]
        server_args += ["--host", "127.0.0.1", "--port", self.url.rsplit(":", 1)[1], "--workers", "1"]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*command, "--config-dir", str(self.config_dir), *server_args],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=home,
                env=env,
                start_new_session=True,
            )


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory, _migrated_sqlite_template: Path) -> Iterator[_AuthServer]:
    home = tmp_path_factory.mktemp("mlflow-auth")
    shutil.copyfile(_migrated_sqlite_template, home / "mlflow.db")
    server = _AuthServer(f"sqlite:///{home / 'mlflow.db'}", home)
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


def _status(url: str, credentials: tuple[str, str] | None) -> int:
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/search?max_results=1")
    if credentials:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_anonymous_and_wrongly_signed_requests_get_401_and_the_admin_gets_in(auth_server: _AuthServer) -> None:
    assert _status(auth_server.url, None) == 401
    assert _status(auth_server.url, (USER, "not-the-password")) == 401
    assert _status(auth_server.url, (USER, PASSWORD)) == 200


def test_our_client_logs_a_run_with_the_credentials_from_its_environment(
    auth_server: _AuthServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document, result_path = write_backtest(tmp_path / "results", "bt-auth")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    refused, no_run = record_backtest(document, result_path, tracking_uri=auth_server.url)
    assert (refused, no_run) == ("failed", None)  # 401: no credentials (see the test below)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    state, run_id = record_backtest(document, result_path, tracking_uri=auth_server.url)
    assert state == "logged" and run_id
    from mlflow import MlflowClient

    assert MlflowClient(auth_server.url).get_run(run_id).info.status == "FINISHED"


def _create_user(url: str, name: str, password: str) -> None:
    """A user of the auth app, created by the admin (mlflow/server/auth: POST users/create)."""
    body = json.dumps({"username": name, "password": password}).encode()
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/users/create", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


READER = ("reader", secrets.token_urlsafe(16))
# (user, password, the HTTP status and the words the reason must hold)
REFUSALS = {
    "no-credentials": (None, None, "401", "MLFLOW_TRACKING_USERNAME"),
    "wrong-password": (USER, "not-the-password", "401", "MLFLOW_TRACKING_PASSWORD"),
    # default_permission READ: a second user reads the admin's experiment but may not log a run into it
    "read-only-user": (*READER, "403", "EDIT"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refused_credentials_fail_the_tracking_with_the_reason_instead_of_pending_for_ever(
    auth_server: _AuthServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    """A 401/403 gave no reason ("MLflow refused result X"), and a study, or a marker synced with
    wrong credentials, stayed pending: every `kubetrader mlflow sync` retried and kept it, though
    refused credentials are no transient fault. Now the tracking fails at once, and the log and the
    sync outcome say why and what to set, and never hold a password."""
    from kubetrader.tracking import sync_pending
    from kubetrader.tracking.record import pending_marker_path, write_pending_marker

    user, password, status, words = REFUSALS[case]
    if case == "read-only-user":
        _create_user(auth_server.url, *READER)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
        owned, _ = write_backtest(tmp_path / "owned", "bt-owned")  # the admin creates the experiment
        assert record_backtest(owned, tmp_path / "owned" / "bt-owned.json", tracking_uri=auth_server.url)[0] == "logged"
    document, result_path = write_backtest(tmp_path / "results", f"bt-refused-{case}")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    if user is not None and password is not None:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    with caplog.at_level("ERROR", logger="kubetrader.tracking.record"):
        state, run_id = record_backtest(document, result_path, tracking_uri=auth_server.url)
    assert (state, run_id) == ("failed", None)
    assert not pending_marker_path(result_path, document.metadata.id).exists()
    (message,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert status in message and words in message and document.metadata.id in message
    assert PASSWORD not in message and (password is None or password not in message)

    # A marker left while the server was down: sync reports the refusal as failed with the reason,
    # and keeps the marker (it logs once the credentials are fixed).
    marker = write_pending_marker(document, result_path, auth_server.url, reason="connection refused")
    (outcome,) = sync_pending(tmp_path / "results", tracking_uri=auth_server.url)
    assert (outcome.state, outcome.run_id) == ("failed", None)
    assert status in outcome.message and words in outcome.message
    assert marker.exists()
    # The command says so too: exit 2 (fix the credentials), not 3 ("unreachable, run again later").
    code, out, _ = cli_in_process(capsys, "mlflow", "sync", "--results", str(tmp_path / "results"),
                                  "--tracking-uri", auth_server.url)  # fmt: skip
    assert code == 2 and f"bt-refused-{case}\tfailed\t" in out and words in out, out
    assert marker.exists()
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    (logged,) = sync_pending(tmp_path / "results", tracking_uri=auth_server.url)
    assert logged.state == "logged" and logged.run_id and not marker.exists()


def test_a_study_whose_credentials_are_refused_leaves_no_pending_marker_and_says_why(
    auth_server: _AuthServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A study's logging left a pending marker on any error: with wrong credentials every
    `kubetrader mlflow sync` retried it and reported "MLflow still unreachable" for ever."""
    from kubetrader.optimize.evaluation import InProcessEvaluator
    from kubetrader.optimize.service import run_study
    from kubetrader.tracking.studies import pending_marker, sync_pending_studies
    from tests.tracking.test_study_tracking import noisy, spec

    monkeypatch.setenv("MLFLOW_TRACKING_URI", auth_server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    with caplog.at_level("ERROR", logger="kubetrader.optimize.service"):
        report = run_study(
            spec(4), name="refused", output_dir=tmp_path, storage_url=f"journal://{tmp_path / 's.log'}",
            evaluator=InProcessEvaluator(run=noisy), confirm=False,
        )  # fmt: skip
    assert report.mlflow_parent_run_id is None
    assert not pending_marker(tmp_path / "studies", "refused").exists()
    (message,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "refused" in message and "401" in message and "MLFLOW_TRACKING_PASSWORD" in message
    # A marker from a time the server was down: sync names the refusal, not the network.
    marker = pending_marker(tmp_path / "studies", "refused")
    marker.parent.mkdir()
    marker.write_text(json.dumps({"study": "refused", "reason": "down"}))
    [refused] = sync_pending_studies(tmp_path, tracking_uri=auth_server.url)
    assert (refused.name, refused.state, refused.run_id) == ("refused", "failed", None)
    assert "401" in refused.message and "MLFLOW_TRACKING_USERNAME" in refused.message and marker.exists()


def test_the_auth_settings_file_is_private_and_holds_no_admin_password(auth_server: _AuthServer) -> None:
    (config,) = auth_server.config_dir.rglob("basic_auth.ini")
    assert config.stat().st_mode & 0o077 == 0
    text = config.read_text()
    assert PASSWORD not in text and "database_uri = sqlite:///" in text


def test_the_settings_file_escapes_percent_signs_and_refuses_bad_values() -> None:
    assert "postgresql://u:p%%40ss@db/mlflow" in auth_config_text("postgresql://u:p%40ss@db/mlflow", "READ")
    with pytest.raises(SpecError, match="default_permission"):
        auth_config_text("sqlite:///x.db", "ALL")


def test_serve_without_an_admin_password_says_which_variable(tmp_path: Path) -> None:
    env = python_environment(MLFLOW_AUTH_ADMIN_USERNAME=USER)
    env.pop("MLFLOW_AUTH_ADMIN_PASSWORD", None)
    command = [str(Path(sys.executable).with_name("kubetrader")), "mlflow", "serve"]
    done = subprocess.run(
        [*command, "--auth-database-uri", f"sqlite:///{tmp_path / 'a.db'}", "--config-dir", str(tmp_path)],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "MLFLOW_AUTH_ADMIN_PASSWORD" in done.stderr
