"""The real market data shipped in the repository's examples/data/, registered on first use.

A user who clones the repo (or a Job whose image holds it) can run the examples
with no import step: asking for a bundled (symbol, timeframe) that the store
lacks imports the file once; later loads read the store.

The directory is ``$KUBETRADER_BUNDLED_DATA`` if set (images put the files
elsewhere), else ``examples/data`` of the source tree the package is installed
from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from kubetrader.data.store import DataStore


class BundledFile(NamedTuple):
    file: str
    fmt: str


# (symbol, timeframe) -> file and layout. Sources: Backtrader's sample data (Yahoo daily
# ORCL/NVDA/YHOO; an index's daily and 5-minute bars as IDX2006) and backtesting.py's test data.
BUNDLED: dict[tuple[str, str], BundledFile] = {
    ("ORCL", "1d"): BundledFile("orcl-1995-2014.txt", "yahoo"),
    ("NVDA", "1d"): BundledFile("nvda-1999-2014.txt", "yahoo"),
    ("YHOO", "1d"): BundledFile("yhoo-1996-2015.txt", "yahoo"),
    ("IDX2006", "1d"): BundledFile("2006-day-001.txt", "backtrader"),
    ("IDX2006", "5m"): BundledFile("2006-min-005.txt", "backtrader"),
    ("GOOG", "1d"): BundledFile("goog-2004-2013.csv", "ohlcv"),
    ("EURUSD", "1h"): BundledFile("eurusd-h1-2017-2018.csv", "ohlcv"),
}


def bundled_dir() -> Path:
    """Where the bundled files are: $KUBETRADER_BUNDLED_DATA, else <source tree>/examples/data."""
    configured = os.environ.get("KUBETRADER_BUNDLED_DATA")
    if configured:
        return Path(configured)
    import kubetrader

    return Path(kubetrader.__file__).resolve().parents[2] / "examples" / "data"


def register_bundled(store: DataStore, symbol: str, timeframe: str) -> bool:
    """Import the bundled file for (symbol, timeframe) into the store; False if there is none.

    Safe to run from several processes at once: the store's merge is locked and
    atomic, and a second import of the same bars adds nothing.
    """
    entry = BUNDLED.get((symbol, timeframe))
    if entry is None:
        return False
    path = bundled_dir() / entry.file
    if not path.is_file():
        return False
    store.import_file(path, symbol, fmt=entry.fmt, timeframe=timeframe)
    return True
