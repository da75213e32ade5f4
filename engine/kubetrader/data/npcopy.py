"""The numpy copy of a stored data set, beside its Parquet file: what a run reads instead of Parquet.

Why: a backtest's run needs its bars as numpy columns (kubetrader.data.columns), and reading them from
Parquet costs pyarrow's import (25-30 ms, its libraries' teardown another 6-9 ms at exit) plus the read,
on every Job and every `kubetrader run`, for a daily data set of 0.2 MB (bench/RESULTS.md, cli). numpy
reads its own format without any of that.

What it is: `processed/{SYMBOL}/{timeframe}.npz`, numpy's uncompressed archive (no pickle), holding the
bars exactly as `DataStore.read_columns` gets them from the Parquet file, the Parquet footer's kubetrader
metadata, and the sha256 of the Parquet file it was made from. The store writes it whenever it writes the
Parquet file (under the same lock, each atomically, Parquet first). The Parquet file stays the data set;
the copy is used only while it is the copy *of that file*: a reader hashes the Parquet file (well under a
millisecond for a daily data set) and reads the copy only when the hash is the one recorded. A Parquet
file written by anything that did not write the copy (an older kubetrader on a shared volume, a file put
there by hand), or replaced between the two renames, is read through pyarrow as before: a copy can be
missing or out of date, and then it is not used; it is never read in place of other bars.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from kubetrader.data.columns import BarColumns

FORMAT = 1
log = logging.getLogger(__name__)


def copy_path(parquet: Path) -> Path:
    """Where the copy of a data set's Parquet file lives: beside it, `.npz` for `.parquet`."""
    return parquet.with_suffix(".npz")


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (FileNotFoundError when there is none)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_copy(target: Path, bars: BarColumns, *, metadata: dict[str, Any], parquet_sha256: str) -> None:
    """Write the copy of the Parquet file whose sha256 is `parquet_sha256` (its bars and footer metadata)."""
    header = {"format": FORMAT, "parquet_sha256": parquet_sha256, "columns": list(bars.columns), "metadata": metadata}
    arrays: dict[str, Any] = {"header": np.array(json.dumps(header)), "stamps": np.asarray(bars.stamps)}
    arrays |= {f"column:{name}": np.asarray(values) for name, values in bars.columns.items()}
    with target.open("wb") as handle:
        np.savez(handle, **arrays)


def _header(archive: Any, parquet: Path) -> dict[str, Any] | None:
    header: dict[str, Any] = json.loads(str(archive["header"]))
    if header.get("format") != FORMAT or header.get("parquet_sha256") != file_sha256(parquet):
        return None
    return header


def read_copy(parquet: Path) -> tuple[BarColumns, dict[str, Any]] | None:
    """(bars, footer metadata) of `parquet` from its copy; None when there is no copy of this very file.
    FileNotFoundError when the Parquet file itself is missing."""
    found = _read(parquet, bars=True)
    if found is None:
        return None
    bars, metadata = found
    assert bars is not None  # _read(bars=True) always reads them
    return bars, metadata


def read_copy_metadata(parquet: Path) -> dict[str, Any] | None:
    """`read_copy`'s footer metadata only (the bars stay on disk)."""
    found = _read(parquet, bars=False)
    return None if found is None else found[1]


def _read(parquet: Path, *, bars: bool) -> tuple[BarColumns | None, dict[str, Any]] | None:
    try:
        with np.load(copy_path(parquet), allow_pickle=False) as archive:
            header = _header(archive, parquet)
            if header is None:
                return None
            if not bars:
                return None, header["metadata"]
            stamps = archive["stamps"]
            columns = {name: archive[f"column:{name}"] for name in header["columns"]}
    except FileNotFoundError:
        file_sha256(parquet)  # no copy: raises if the Parquet file itself is missing (the caller's error)
        return None
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError) as exc:  # unreadable: Parquet is the data set
        log.warning("ignoring the unreadable numpy copy of %s: %s", parquet, exc)
        return None
    for values in (stamps, *columns.values()):
        values.flags.writeable = False  # as the arrays read from Parquet (kubetrader.data.columns)
    return BarColumns(stamps, columns), header["metadata"]
