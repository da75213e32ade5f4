"""ResultDocument -> MLflow params, metrics and tags. Pure functions, no MLflow import.

Kept apart from the I/O so the mapping (what a run in MLflow means) is tested
without a server, and the optimizer can reuse it for its trials.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from kubetrader.results.schema import ResultDocument
from kubetrader.specs.backtest import BacktestSpec
from kubetrader.tracking import naming

# MLflow's limits (mlflow.utils.validation); longer values are refused by the server.
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_ERROR_TAG = 5000

DURATION_METRIC = "run_duration_seconds"


def backtest_spec(document: ResultDocument) -> BacktestSpec:
    """The document's spec as a model; accepts the bare spec or a whole custom resource."""
    raw: Mapping[str, Any] = document.spec
    if "kind" in raw and isinstance(raw.get("spec"), Mapping):
        raw = raw["spec"]
    return BacktestSpec.model_validate(raw)


def experiment_path(document: ResultDocument) -> naming.ExperimentPath:
    spec = backtest_spec(document)
    return naming.ExperimentPath(
        project=spec.tracking.project,
        asset_class=spec.tracking.asset_class,
        strategy_family=spec.tracking.strategy_family,
        strategy=naming.strategy_name(spec.strategy.path),
    )


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    elif isinstance(value, list | tuple):
        out[prefix] = ",".join(str(v) for v in value)
    else:
        out[prefix] = str(value)


def params_from_spec(spec: BacktestSpec) -> dict[str, str]:
    """Strategy params under their own names (as the optimizer's trials log them, so the
    two line up in MLflow's comparison views); data, broker and risk under dotted names."""
    params: dict[str, str] = {name: str(value) for name, value in spec.strategy.params.items()}
    params["strategy"] = spec.strategy.path
    dumped = spec.model_dump(mode="json", exclude_none=True)
    for section in ("data", "broker", "risk"):
        _flatten(section, dumped.get(section), params)
    return {key: value[:MAX_PARAM_VALUE] for key, value in params.items()}


def metrics_from_document(document: ResultDocument) -> dict[str, float]:
    """Every engine metric that has a value, plus the run's wall-clock duration.

    None means "not defined for this run" (no trades, no benchmark) and is left out
    rather than logged as NaN, so MLflow's sorting and charts are not polluted.
    """
    metrics = {
        name: float(value)
        for name, value in document.metrics.items()
        if value is not None and not (isinstance(value, float) and math.isnan(value))
    }
    metrics[DURATION_METRIC] = float(document.metadata.wall_seconds)
    return metrics


def tags_from_document(document: ResultDocument, path: naming.ExperimentPath) -> dict[str, str]:
    meta = document.metadata
    tags = {
        **path.tags(),
        naming.SYMBOLS: ",".join(meta.symbols),
        naming.STATUS: document.status,
        naming.PACKAGE_VERSION: meta.package_version,
        naming.BACKTRADER_VERSION: meta.backtrader_version,
        naming.DATA_HASH: meta.data_hash,
        naming.SPEC_HASH: meta.spec_hash,
        naming.RESULT_ID: meta.id,
        naming.KIND: "backtest",
        naming.RUN_NAME: meta.name,
    }
    if document.error:
        tags[naming.ERROR] = document.error[:MAX_ERROR_TAG]
    return {key: value[:MAX_TAG_VALUE] for key, value in tags.items()}


def run_status(document: ResultDocument) -> str:
    """MLflow's terminal status for a finished backtest."""
    return "FINISHED" if document.status == "succeeded" else "FAILED"


def iso_to_millis(stamp: str) -> int | None:
    """An ISO timestamp from the result metadata as epoch milliseconds (UTC if naive)."""
    import datetime as dt

    try:
        parsed = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)
