"""Bars as numpy columns: the normalized frame (kubetrader.data.frames) without pandas.

Why: a backtest Job or `kubetrader run` pays its imports on every run, and pandas (with the
pyarrow it loads at import under pandas 3) cost more CPU than a whole daily Backtrader run.
The run path reads the store's Parquet file with pyarrow straight into these columns, feeds
Backtrader from them and computes its results on arrays; `frame()` gives the pandas form, the
same values, to everything else (the dashboard, the optimizer, `data` commands).

The stamps are int64 nanoseconds since the epoch, UTC (a frame's `index.asi8`); the columns
are float64 in the store's order (open, high, low, close, volume, then adj_close if any).
Arrays read from a file are read-only: the loader's per-process cache hands the same ones to
every caller, and none can change what the next one sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

NS_PER_DAY = 86_400_000_000_000


@dataclass(frozen=True)
class BarColumns:
    stamps: np.ndarray
    columns: Mapping[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.stamps.size)

    def select(self, keep: np.ndarray | slice) -> BarColumns:
        """The bars where `keep` (a boolean mask or a slice) holds."""
        return BarColumns(self.stamps[keep], {name: values[keep] for name, values in self.columns.items()})

    def day(self, position: int) -> str:
        """'YYYY-MM-DD' of one bar, in UTC (what `f"{index[i]:%Y-%m-%d}"` prints of the frame's index)."""
        return str(np.datetime_as_string(self.stamps[position].astype("datetime64[ns]"), unit="D"))

    def frame(self) -> pd.DataFrame:
        """The normalized frame of these bars (UTC index named `datetime`, float64 columns), a copy."""
        import pandas as pd

        from kubetrader.data.frames import INDEX_NAME

        index = pd.DatetimeIndex(self.stamps.astype("datetime64[ns]")).tz_localize("UTC").rename(INDEX_NAME)
        return pd.DataFrame({name: np.array(values) for name, values in self.columns.items()}, index=index)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> BarColumns:
        from kubetrader.data.frames import to_utc_index

        stamps = np.asarray(to_utc_index(frame.index).asi8)
        return cls(stamps, {str(name): frame[name].to_numpy(dtype=np.float64) for name in frame.columns})


def _values(column: pa.ChunkedArray, dtype: str) -> np.ndarray:
    """A primitive Arrow column as a numpy array, nulls as NaN (or NaT), without pandas.

    `ChunkedArray.to_numpy()` would do, but pyarrow's conversion imports pandas on its first
    use (to learn pandas' NaT and NA): reading the buffers directly keeps a run's imports to
    numpy and pyarrow."""
    parts = []
    for chunk in column.chunks:
        validity, data = chunk.buffers()[:2]
        values = np.frombuffer(data, dtype=dtype, count=len(chunk) + chunk.offset)[chunk.offset :]
        if chunk.null_count:
            bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
            valid = bits[chunk.offset : chunk.offset + len(chunk)].astype(bool)
            values = np.where(valid, values, np.iinfo(np.int64).min if dtype == "<i8" else np.nan)  # NaT, NaN
        parts.append(values)
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def from_table(table: pa.Table, stamp_column: str) -> BarColumns:
    """The bars of a table read from the store: `stamp_column` (timestamp[ns, UTC]) and float64 columns."""
    import pyarrow as pa

    if table.schema.field(stamp_column).type != pa.timestamp("ns", tz="UTC"):
        raise ValueError(f"{stamp_column} is {table.schema.field(stamp_column).type}, not timestamp[ns, tz=UTC]")
    columns = {}
    for name in table.column_names:
        if name == stamp_column:
            continue
        if table.schema.field(name).type != pa.float64():
            raise ValueError(f"column {name} is {table.schema.field(name).type}, not double")
        columns[name] = _values(table.column(name), "<f8")
    return BarColumns(_values(table.column(stamp_column), "<i8"), columns)
