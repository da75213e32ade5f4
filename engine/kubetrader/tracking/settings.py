"""Where runs go: the tracking URI, the artifact root and the network patience.

Order: an explicit argument, then MLFLOW_TRACKING_URI, then a local SQLite store
in the data directory (MLflow's recommended local back end: the file store is
deprecated and slow to query).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from kubetrader import defaults
from kubetrader.redaction import MASK, redact_uri

# A backtest must not wait minutes for a dead tracking server (MLflow's defaults are
# 7 retries with exponential back-off and a 120 s timeout): fail fast, keep the result
# locally and log it later with `kubetrader mlflow sync`.
DEFAULT_HTTP_TIMEOUT_SECONDS = "5"
DEFAULT_HTTP_MAX_RETRIES = "0"


def data_dir() -> Path:
    return defaults.data_dir().resolve()


def local_tracking_uri(directory: Path | None = None) -> str:
    return defaults.local_tracking_uri(directory)


def tracking_uri(explicit: str | None = None) -> str:
    return database_uri(explicit or os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri())


def marker_uri(uri: str | None) -> str | None:
    """The tracking URI as a pending marker keeps it: without credentials (kubetrader.redaction).

    A marker is a file on the shared results volume; a password in it would be readable by
    every pod and user that reads results. `kubetrader mlflow sync` then takes the credentials
    from its own environment (MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME/PASSWORD).
    """
    return redact_uri(uri)


def uri_from_marker(explicit: str | None, stored: str | None) -> str | None:
    """The URI to sync a marker to: the explicit one, else the stored one unless it was redacted
    (then this process's own MLFLOW_TRACKING_URI, which has the credentials)."""
    if explicit:
        return explicit
    if stored and MASK in stored:
        return os.environ.get("MLFLOW_TRACKING_URI") or None
    return stored


def database_uri(uri: str) -> str:
    """The URI with a PostgreSQL driver SQLAlchemy can load; anything else unchanged.

    SQLAlchemy 2.1 maps a bare `postgresql://` (and `postgres://`, as many hosting
    providers write it) to psycopg 3; the platform ships psycopg2. So users may write
    either form, and an explicit driver (`postgresql+psycopg://`) is left alone.
    """
    for bare in ("postgresql://", "postgres://"):
        if uri.startswith(bare):
            return "postgresql+psycopg2://" + uri.removeprefix(bare)
    return uri


def is_database_uri(uri: str) -> bool:
    """True when the client talks to the database itself (no server to hold artifacts)."""
    return uri.split(":", 1)[0].split("+", 1)[0] in {"sqlite", "postgresql", "mysql", "mssql"}


def artifact_root(uri: str) -> str | None:
    """Artifact location for new experiments, or None to let the server decide.

    With a database store and no server, MLflow would otherwise put artifacts in
    ./mlruns relative to whatever directory the process runs in.
    """
    if not is_database_uri(uri):
        return None
    configured = os.environ.get("KUBETRADER_MLFLOW_ARTIFACTS")
    if configured:
        return configured
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return (data_dir() / "mlartifacts").as_uri()


def ui_command(uri: str) -> str:
    """The command that opens MLflow's UI on this store."""
    if is_database_uri(uri):
        root = artifact_root(uri) or ""
        return f"mlflow ui --backend-store-uri {uri} --default-artifact-root {root}"
    return f"open {uri} in a browser"


@contextlib.contextmanager
def short_http_timeouts() -> Iterator[None]:
    """Fail-fast, quiet client settings for the duration of a logging call, unless the user set
    their own: short HTTP timeouts, no retries, and no "View run at" line on stdout (printing it
    costs MLflow one more request for the run, on every run ended).

    MLflow reads these environment variables on every request, so a scoped change works
    and does not leak into the rest of the process (e.g. a long optimizer session).
    """
    wanted = {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": DEFAULT_HTTP_TIMEOUT_SECONDS,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": DEFAULT_HTTP_MAX_RETRIES,
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    }
    added = [name for name in wanted if name not in os.environ]
    for name in added:
        os.environ[name] = wanted[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and its causes. MLflow wraps connection errors in MlflowException without
    `from`, so the cause is found on the implicit context chain too."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def refusal(exc: BaseException) -> str | None:
    """Why the tracking server turned our credentials away (HTTP 401 or 403), or None.

    Wrong or missing credentials are no transient fault: retrying later (a pending marker) would
    fail the same way for ever, so callers fail the tracking at once with this reason. MLflow's
    REST client raises MlflowException with the error code of the HTTP status
    (mlflow/utils/rest_utils.py `verify_rest_response`; 401 UNAUTHENTICATED, 403 PERMISSION_DENIED).
    """
    from mlflow.exceptions import MlflowException

    for current in _chain(exc):
        if not isinstance(current, MlflowException):
            continue
        status = current.get_http_status_code()
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        if status == 401:
            signed = f"the user {user!r} with MLFLOW_TRACKING_PASSWORD" if user else "no credentials"
            return (
                f"MLflow refused the sign-in (HTTP 401, {signed}): set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD to a user of the tracking server (the chart: auth.mlflow)"
            )
        if status == 403:
            return (
                f"MLflow denied the user {user!r} (HTTP 403): it may not write to this experiment; "
                "grant it EDIT (or sign in as the experiment's owner)"
            )
    return None


def is_unreachable(exc: BaseException) -> bool:
    """Did this fail because the tracking store could not be reached (vs. a refused request)?

    A refusal of our credentials (`refusal`) is not: the server answered.
    """
    import requests

    if refusal(exc) is not None:
        return False
    for current in _chain(exc):
        if isinstance(current, requests.ConnectionError | requests.Timeout | ConnectionError | TimeoutError):
            return True
        if type(current).__name__ == "OperationalError":  # sqlalchemy: database down or locked
            return True
        text = str(current)
        if "Max retries exceeded" in text or "Connection refused" in text or "timeout exception" in text:
            return True
    return False
