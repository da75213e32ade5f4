"""No credentials in what is shown or written down: `redact_uri` masks user-info and secret
query values (#21: it kept `?password=`), pending-MLflow markers keep only the redacted URI and
`mlflow sync` takes the credentials from its own environment."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kubetrader.redaction import has_credentials, redact_uri
from kubetrader.tracking.record import pending_markers, sync_pending, write_pending_marker
from tests.tracking.documents import write_backtest


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("postgresql://mlflow:pw@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
        ("redis://:pw@redis:6379/0", "redis://***@redis:6379/0"),
        (
            "rediss://redis:6380/0?password=pw&ssl_cert_reqs=none",
            "rediss://redis:6380/0?password=***&ssl_cert_reqs=none",
        ),
        ("https://mlflow.example/?token=t0k", "https://mlflow.example/?token=***"),
        (
            "https://h/x?api_key=1&X-Amz-Signature=2&secret=3&region=eu",
            "https://h/x?api_key=***&X-Amz-Signature=***&secret=***&region=eu",
        ),
        ("postgresql://u:p@db/x?sslmode=require&password=p", "postgresql://***@db/x?sslmode=require&password=***"),
        ("http://u:p@[::1]:5000/", "http://***@[::1]:5000/"),
        ("http://mlflow:5000", "http://mlflow:5000"),
        ("sqlite:////data/mlflow.db", "sqlite:////data/mlflow.db"),
        ("http://h:pw@x", "http://***@x"),
        ("http://u:pw@x:notaport/", "http://***"),
    ],
)
def test_redact_uri_masks_user_info_and_secret_query_values(uri: str, shown: str) -> None:
    assert redact_uri(uri) == shown
    assert has_credentials(uri) == (uri != shown)


def test_the_dashboard_shows_uris_through_the_same_function() -> None:
    from kubetrader_dashboard.services import mlflow, queue, settings_view

    assert mlflow.redact_uri is queue.redact_uri is settings_view.redact_uri is redact_uri


def test_a_pending_marker_keeps_no_credentials_and_sync_uses_its_own_environment(
    tmp_path: Path, local_mlflow_uri: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    document, result_path = write_backtest(tmp_path / "results", "bt-marker")
    down = "http://kubetrader:s3cret@127.0.0.1:9/?token=t0ken"
    marker = write_pending_marker(document, result_path, down, reason="server down")
    text = marker.read_text()
    assert "s3cret" not in text and "t0ken" not in text
    assert json.loads(text)["tracking_uri"] == "http://***@127.0.0.1:9/?token=***"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", local_mlflow_uri())
    outcomes = sync_pending(tmp_path / "results")
    assert [o.state for o in outcomes] == ["logged"] and pending_markers(tmp_path / "results") == []
