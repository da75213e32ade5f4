"""What the operator writes into status must fit the CRD's status schema.

A real API server prunes fields a structural schema does not declare (the emulator
does not), so a status field missing from `crdgen/status.py` would silently vanish
in a cluster. These tests walk the operator's status documents against the schemas.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import yaml

from kubetrader_operator.backtest.status import matrix_cells
from kubetrader_operator.live.status import status_from_snapshot
from tests.helpers import ROOT

NOW = "2024-01-02T03:04:05Z"


def _status_schema(plural: str) -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "crds" / f"{plural}.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]


def _undeclared(value: Any, schema: dict[str, Any], path: str = "status") -> list[str]:
    """Paths the structural schema would prune."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if properties is not None and key in properties:
                found += _undeclared(item, properties[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += _undeclared(item, extra, f"{path}.{key}")
            else:
                found.append(f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += _undeclared(item, schema["items"], f"{path}[{i}]")
    return found


def _without_nulls(value: Any) -> Any:
    """Status is written as a merge patch: a null removes the field rather than storing null."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def test_live_status_from_a_runner_snapshot_fits_the_livedeployment_schema() -> None:
    snapshot = {
        "connected": True, "halted": None, "stopping": False, "finished": False, "pnl": 12.5, "equity": 100_012.5,
        "realized_pnl": 2.5, "unrealized_pnl": 10.0, "positions": {"ORCL": 100.0},
        "open_orders": [{"order_id": 7, "symbol": "ORCL", "side": "BUY", "size": 10.0, "order_type": "LMT",
                         "limit_price": 30.5, "status": "working"}],
        "last_heartbeat": 1_704_164_645.0, "flat_confirmed_at": 1_704_164_600.0,
    }  # fmt: skip
    status = status_from_snapshot(snapshot, [], generation=2, now=NOW)
    schema = _status_schema("livedeployments")
    assert _undeclared(status, schema) == []
    jsonschema.validate(_without_nulls(status), schema)
    assert status["openOrderList"][0] == {
        "orderId": "7", "symbol": "ORCL", "side": "BUY", "size": 10.0, "orderType": "LMT", "limitPrice": 30.5,
        "status": "working",
    }  # fmt: skip


def test_matrix_cells_fit_the_backtest_schema() -> None:
    summary = {"cells": 4, "failedCells": 1, "best": "59c15fba1fa9", "table": "/data/results/campaigns/x.csv"}
    cells = matrix_cells(summary)
    status = {"phase": "Succeeded", "cells": cells, "metrics": {"sharpeRatio": 0.6, "numTrades": 14}}
    schema = _status_schema("backtests")
    assert _undeclared(status, schema) == []
    jsonschema.validate(status, schema)
    assert matrix_cells({"metrics": {}}) is None  # a plain Backtest has no cells
