"""Where the platform keeps things on one machine when nothing is configured.

One place for the local defaults, so the CLI that writes and the dashboard that reads
agree without either copying a path: results under `./results`, the data directory
`$KUBETRADER_DATA_DIR` (else `./data`) holding MLflow's SQLite store `mlflow.db`, its
artifacts and one Optuna journal per study under `optuna/`, and the Redis that
`kubetrader monitor` looks for on the loopback port. Standard library only (the
dashboard's settings import it).
"""

from __future__ import annotations

import os
from pathlib import Path

RESULTS_DIR = Path("results")
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
MLFLOW_DB = "mlflow.db"
OPTUNA_DIR = "optuna"
JOURNAL_SUFFIX = ".log"
JOURNAL_SCHEME = "journal://"


def data_dir() -> Path:
    """The data directory: `$KUBETRADER_DATA_DIR`, else `./data` (relative to where the process runs)."""
    return Path(os.environ.get("KUBETRADER_DATA_DIR") or "data")


def mlflow_db(directory: Path | None = None) -> Path:
    return (directory or data_dir()).resolve() / MLFLOW_DB


def local_tracking_uri(directory: Path | None = None) -> str:
    """MLflow's local store: a SQLite file in the data directory."""
    return f"sqlite:///{mlflow_db(directory)}"


def optuna_dir(directory: Path | None = None) -> Path:
    return (directory or data_dir()) / OPTUNA_DIR


def journal_url(study_name: str, directory: Path | None = None) -> str:
    """A study's local storage: a journal file of its own (safe with several processes, unlike SQLite)."""
    return f"{JOURNAL_SCHEME}{optuna_dir(directory) / (study_name + JOURNAL_SUFFIX)}"


def journal_files(directory: Path | None = None) -> list[Path]:
    """Every local study's journal, by name."""
    return sorted(optuna_dir(directory).glob(f"*{JOURNAL_SUFFIX}"))
