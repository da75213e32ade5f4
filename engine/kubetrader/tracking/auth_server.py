"""MLflow's tracking server behind its own authentication (`mlflow server --app-name basic-auth`).

MLflow's basic-auth app reads its settings from an ini file named by MLFLOW_AUTH_CONFIG_PATH
(mlflow/server/auth/config.py, mlflow 3.17): `default_permission`, `database_uri` of the user
store, and the admin it creates on the first start, whose name and password it also takes from
MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD (MLflow ships no default password and
refuses to start without one), and MLFLOW_FLASK_SERVER_SECRET_KEY for its CSRF tokens. The
user store's URI holds the database password, so the file cannot be a ConfigMap: `kubetrader
mlflow serve` writes it at start, mode 0600, into the pod's scratch directory, then replaces
itself with `mlflow server --app-name basic-auth`. The admin's credentials stay in the environment
(from a Secret) and never enter the file.

Clients need nothing of ours: MLflow's client sends MLFLOW_TRACKING_USERNAME/PASSWORD as HTTP
basic auth on every request (mlflow/utils/rest_utils.py), so the chart gives those to every
pod that logs. `/health` stays open (the probes); every other route answers 401 without a user.
"""

from __future__ import annotations

import os
from pathlib import Path

from kubetrader.errors import SpecError

PERMISSIONS = ("NO_PERMISSIONS", "READ", "EDIT", "MANAGE")
# The admin, and the key signing the auth app's CSRF tokens (the same on every replica).
REQUIRED_ENV = ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY")
CONFIG_FILE = "basic_auth.ini"


def auth_config_text(database_uri: str, default_permission: str) -> str:
    """The ini MLflow's auth app reads. `%` is doubled: configparser interpolates it
    (a URL-encoded password, `%40`, would otherwise break the file)."""
    if default_permission not in PERMISSIONS:
        raise SpecError("default_permission", f"{default_permission!r} is not one of {', '.join(PERMISSIONS)}")
    if not database_uri or "\n" in database_uri:
        raise SpecError("auth_database_uri", "must be one SQLAlchemy URL")
    return f"[mlflow]\ndefault_permission = {default_permission}\ndatabase_uri = {database_uri.replace('%', '%%')}\n"


def write_auth_config(directory: Path, database_uri: str, default_permission: str) -> Path:
    """The ini in `directory`, readable by this user only."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CONFIG_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(auth_config_text(database_uri, default_permission))
    return path


def server_command(config: Path, server_args: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) of the authenticated server; SpecError when the admin is not configured."""
    missing = [name for name in REQUIRED_ENV if not os.environ.get(name)]
    if missing:
        raise SpecError(
            missing[0], "is not set: the auth app needs its admin user, password and CSRF key (from Secrets)"
        )
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(config)}
    return ["mlflow", "server", "--app-name", "basic-auth", *server_args], env
