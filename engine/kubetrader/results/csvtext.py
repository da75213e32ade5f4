"""CSV text of a result's columns, byte for byte what pandas' `DataFrame.to_csv` writes, without a DataFrame.

Why: `to_csv` on a 5,000-day equity frame took about 50 ms, the largest part of writing a
result (issue 20), most of it numpy's float-to-string cast, which gives Python's `repr(float)`:
the shortest text that reads back as the same float (`float_cells` makes it faster still). The
rows are joined directly when no cell needs quoting, else by the stdlib `csv` writer, the one
pandas itself writes rows with (minimal quoting, "\\n" line ends on POSIX). Missing values (NaN,
None) are written empty, as pandas' default `na_rep=""`. tests/engine/test_result_files.py
compares the output with pandas' on real results and on edge values.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pydantic_core


def float_cells(values: np.ndarray) -> list[str]:
    """Each float as pandas writes it in a float64 column: its shortest repr, NaN empty, inf "inf".

    pydantic-core's JSON writer (Rust, already loaded for the result document) prints a list of
    floats about four times faster than `repr` one by one, and the same text wherever Python
    prints positional notation, 1e-4 <= |x| < 1e16, and for zeros (both are shortest round-trip
    forms); the few other cells (exponent notation, NaN, inf) are printed by `repr`.
    tests/engine/test_result_files.py checks both against a million values across magnitudes."""
    floats = np.asarray(values, dtype=np.float64)
    items = floats.tolist()
    cells = pydantic_core.to_json(items).decode("ascii")[1:-1].split(",") if items else []
    magnitude = np.abs(floats)
    with np.errstate(invalid="ignore"):
        positional = ((magnitude >= 1e-4) & (magnitude < 1e16)) | (floats == 0)
    for i in np.flatnonzero(~positional).tolist():
        value = items[i]
        cells[i] = "" if math.isnan(value) else repr(value)
    return cells


def cells(values: Iterable[Any]) -> list[str]:
    """Cells of a column of any type: None and NaN empty, floats as `float_cells`, anything else `str`."""
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append("")
        elif isinstance(v, float):
            out.append(repr(v))
        else:
            out.append(str(v))
    return out


_SPECIAL = (",", '"', "\n", "\r")


def _plain(column: Sequence[str]) -> bool:
    """No cell the csv writer would quote: no delimiter, quote or line break (the writer's QUOTE_MINIMAL rule)."""
    text = "\0".join(column)
    return not any(special in text for special in _SPECIAL)


def csv_text(header: Sequence[str], columns: Sequence[Sequence[str]]) -> str:
    """The header line, then one line per row of the (already formatted, equally long) columns.

    When no cell needs quoting (an equity CSV: dates and numbers) the lines are joined directly,
    which is what the writer produces then, in a twentieth of its time; otherwise the writer quotes."""
    if len(header) > 1 and all(map(_plain, [header, *columns])):
        lines = [",".join(header), *map(",".join, zip(*columns, strict=True))]
        return "\n".join(lines) + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(zip(*columns, strict=True))
    return buffer.getvalue()
