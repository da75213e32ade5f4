"""Campaign output sized for scale: one columnar file per batch instead of files per cell.

A cell's full result (the JSON document and the equity CSV) is about 0.5 MB: 100,000
cells would need 50 GB of shared volume. With `artifacts: compact` (the default of
campaigns) a worker writes only the cell's equity curve as a small `.npy` next to
the batch, the driver gathers every cell's metrics and curve into one Parquet file
per batch (`{output}/campaigns/{batch}.parquet`, zstd, a few KB per cell), removes
the per-cell pieces, and writes full result files only for the top K cells (or for
every cell with `artifacts: full`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

import numpy as np

Artifacts = Literal["compact", "full"]
DEFAULT_TOP_K = 10


def cells_dir(output_dir: Path, batch: str) -> Path:
    return output_dir / "campaigns" / batch / "cells"


def batch_file(output_dir: Path, batch: str) -> Path:
    return output_dir / "campaigns" / f"{batch}.parquet"


def write_cell_curve(
    output_dir: Path, batch: str, cell: str, worker: str, dates: np.ndarray, equity: np.ndarray
) -> Path:
    """A cell's equity curve (days since 1970, values) as one .npy; atomic, so attempts never mix."""
    folder = cells_dir(output_dir, batch)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cell}.npy"
    partial = folder / f".{cell}.{worker}.npy"
    np.save(partial, np.vstack([dates.astype(np.float64), equity.astype(np.float64)]))
    partial.replace(path)
    return path


def write_batch_file(output_dir: Path, batch: str, rows: list[dict[str, object]]) -> Path:
    """One Parquet file for the batch: a row per cell with its metrics and its equity curve;
    then the per-cell curves are removed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = []
    for row in rows:
        curve_path = row.pop("curve_path", None)
        dates: list[int] = []
        values: list[float] = []
        if isinstance(curve_path, str) and curve_path.endswith(".npy") and Path(curve_path).exists():
            data = np.load(curve_path)
            dates, values = data[0].astype(np.int32).tolist(), data[1].tolist()
        records.append({**row, "equity_dates": dates, "equity": values})
    table = pa.Table.from_pylist(records)
    table = table.set_column(
        table.schema.get_field_index("equity_dates"),
        "equity_dates",
        table.column("equity_dates").cast(pa.list_(pa.int32())).cast(pa.list_(pa.date32())),
    )
    path = batch_file(output_dir, batch)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    shutil.rmtree(cells_dir(output_dir, batch).parent, ignore_errors=True)
    return path
