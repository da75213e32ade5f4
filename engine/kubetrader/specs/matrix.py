"""Expanding a Backtest's `matrix` into one plain BacktestSpec per cell.

Pure and deterministic: the same spec always gives the same cells with the same
ids, so the local runner, the work queue and the operator agree on what a cell is
and a re-run writes to the same place instead of adding a second result.
"""

from __future__ import annotations

import hashlib
import itertools
import json

from kubetrader.specs.backtest import BacktestSpec, DataSpec, StrategySpec
from kubetrader.specs.common import SpecModel


def spec_hash(spec: SpecModel) -> str:
    """A stable hash of a spec's canonical JSON (sorted keys, camelCase)."""
    canonical = json.dumps(spec.to_wire(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def expand_matrix(spec: BacktestSpec) -> list[tuple[str, BacktestSpec]]:
    """(cell id, cell spec) for every combination of the matrix, in a stable order.

    Each symbol in `matrix.symbols` becomes a single-symbol backtest (with the base
    spec's benchmark); each strategy in `matrix.strategies` replaces the base
    strategy; `matrix.params` values are crossed and merged over the base params.
    A spec without a matrix is one cell. The cell id is the first 12 hex digits of
    the cell spec's hash.
    """
    if spec.matrix is None:
        return [(spec_hash(spec)[:12], spec)]
    matrix = spec.matrix
    symbol_sets = [[s] for s in matrix.symbols] or [list(spec.data.symbols)]
    strategies = list(matrix.strategies) or [spec.strategy.path]
    names = sorted(matrix.params)
    value_lists = [matrix.params[name] for name in names]
    cells: list[tuple[str, BacktestSpec]] = []
    for symbols, path, values in itertools.product(symbol_sets, strategies, itertools.product(*value_lists)):
        # Base params only carry over to the base strategy: another class may not know them.
        params = dict(spec.strategy.params) if path == spec.strategy.path else {}
        params.update(zip(names, values, strict=True))
        data: DataSpec = spec.data.model_copy(update={"symbols": symbols})
        cell = spec.model_copy(
            update={"strategy": StrategySpec(path=path, params=params), "data": data, "matrix": None}
        )
        cells.append((spec_hash(cell)[:12], cell))
    return cells
