"""What a trade is, once, for the metrics, the tearsheet, the CLI and the dashboard.

A trade is a closed round trip: opened and closed, with its realised net PnL. A position
still open when the data ends is not a trade: it is an open position, listed apart and
labelled, valued at the last close (its PnL is unrealised). The result document keeps
both in `trades` (an open one has `exit_time` None), so every reader splits them here
and every count of trades is the count of closed ones (`num_trades`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")


def is_closed(record: Any) -> bool:
    """A TradeRecord (or a row with `exit_time`) is a trade when it has been closed."""
    exit_time = record["exit_time"] if isinstance(record, dict) else record.exit_time
    return exit_time is not None


def closed_trades(records: Sequence[T]) -> list[T]:
    return [r for r in records if is_closed(r)]


def open_positions(records: Sequence[T]) -> list[T]:
    return [r for r in records if not is_closed(r)]


def closed_frame(trades: pd.DataFrame) -> pd.DataFrame:
    """The closed round trips of a trade frame (TradeRecord's columns)."""
    return trades[trades["exit_time"].notna()]


def open_frame(trades: pd.DataFrame) -> pd.DataFrame:
    return trades[trades["exit_time"].isna()]
