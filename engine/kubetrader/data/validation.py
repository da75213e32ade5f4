"""Checks on a bar frame, and the report they produce.

Corrupt data is worse than no data: a NaN close or a high below the low does not
crash a backtest, it silently changes its result. So the store refuses a frame
with any *error* and names the first bad bar (timestamp and column). *Warnings*
are reported but accepted: zero volume is normal for an index or FX feed (the
bundled IDX2006 has no volume at all), and the loader never drops such bars.

Gaps are counted in business days (Mon-Fri, no holiday calendar), which is what
"sessions" means here: the 4 sessions the US markets were closed after 11
September 2001 stay under the default limit of 5.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from kubetrader.data.frames import ADJ_CLOSE, COLUMNS, PRICE_COLUMNS, to_utc_index
from kubetrader.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

Severity = Literal["error", "warning"]


class Issue(BaseModel):
    """One kind of problem, with the first bar that has it and how many bars do."""

    model_config = ConfigDict(frozen=True, defer_build=True)  # built on first use: not on a run's path

    check: str
    severity: Severity
    message: str
    bar: dt.datetime | None = None
    column: str | None = None
    count: int = 1


class ValidationReport(BaseModel):
    """What `validate` found in one (symbol, timeframe) data set."""

    model_config = ConfigDict(frozen=True, defer_build=True)  # built on first use: not on a run's path

    symbol: str
    timeframe: str
    bars: int
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    max_gap_sessions: int
    issues: list[Issue] = []

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def valid(self) -> bool:
        return not self.errors

    def raise_if_invalid(self) -> None:
        """DataError naming the earliest bad bar (timestamp and column) and how many problems there are."""
        errors = self.errors
        if not errors:
            return
        # a whole-frame problem (missing column, no bars) comes first, then the earliest bad bar
        whole = [i for i in errors if i.bar is None]
        first = whole[0] if whole else min(errors, key=lambda i: i.bar or dt.datetime.max.replace(tzinfo=dt.UTC))
        more = sum(i.count for i in errors) - 1
        suffix = f" (and {more} more problem{'s' if more != 1 else ''})" if more else ""
        raise DataError(f"{self.symbol} {self.timeframe}: corrupt data: {first.message}{suffix}")


def stamp(when: dt.datetime | pd.Timestamp, timeframe: str) -> str:
    """A bar's timestamp as people write it: the date for daily bars, date and time otherwise."""
    return when.strftime("%Y-%m-%d") if timeframe == "1d" else when.strftime("%Y-%m-%d %H:%M")


def _first(mask: pd.Series | np.ndarray) -> tuple[int, int]:
    """(position of the first True, number of True) of a boolean series or array."""
    import numpy as np

    values = np.asarray(mask)
    return int(values.argmax()), int(values.sum())


def _issue_adder(frame: pd.DataFrame, timeframe: str, issues: list[Issue]) -> Callable[..., None]:
    """`add(check, severity, mask, column, problem)`: append an Issue naming the first bar where `mask` holds."""

    def add(check: str, severity: Severity, mask: pd.Series | np.ndarray, column: str | None, problem: str) -> None:
        if not mask.any():
            return
        pos, count = _first(mask)
        when = frame.index[pos]
        where = f"bar {stamp(when, timeframe)}" + (f" column {column}" if column else "")
        value = f" ({float(frame[column].iloc[pos])!r})" if column else ""
        issues.append(
            Issue(
                check=check,
                severity=severity,
                message=f"{where}: {problem}{value}" + (f"; {count} bars" if count > 1 else ""),
                bar=when.to_pydatetime(),
                column=column,
                count=count,
            )
        )

    return add


def price_columns(columns: Iterable[str]) -> list[str]:
    """The columns that hold prices: open..close, and Adj Close where the source has it.

    Adj Close scales every price of its bar at load time (kubetrader.data.frames.adjusted),
    so a zero, negative, missing or infinite one corrupts the bar as surely as a bad close:
    one zero once gave a "successful" backtest with a -95 % drawdown.
    """
    return [*PRICE_COLUMNS, *([ADJ_CLOSE] if ADJ_CLOSE in columns else [])]


def _price_issues(frame: pd.DataFrame, timeframe: str) -> list[Issue]:
    import numpy as np

    issues: list[Issue] = []
    add = _issue_adder(frame, timeframe, issues)
    for column in price_columns(frame.columns):
        add("missing_price", "error", frame[column].isna(), column, "price is missing or not a number")
        add("infinite_price", "error", np.isinf(frame[column].to_numpy()), column, "price is infinite")
        add("non_positive_price", "error", frame[column] <= 0, column, "price is zero or negative")
    return issues


def _bar_issues(frame: pd.DataFrame, timeframe: str) -> list[Issue]:
    import numpy as np

    issues = _price_issues(frame, timeframe)
    add = _issue_adder(frame, timeframe, issues)
    add("missing_volume", "error", frame["volume"].isna(), "volume", "volume is missing or not a number")
    add("infinite_volume", "error", np.isinf(frame["volume"].to_numpy()), "volume", "volume is infinite")
    add("negative_volume", "error", frame["volume"] < 0, "volume", "volume is negative")
    add("high_below_low", "error", frame["high"] < frame["low"], "high", "high is below low")
    for column in ("open", "close"):
        outside = (frame[column] > frame["high"]) | (frame[column] < frame["low"])
        add(f"{column}_outside_range", "error", outside, column, f"{column} is outside [low, high]")
    add("zero_volume", "warning", frame["volume"] == 0, "volume", "volume is zero")
    return issues


def price_report(frame: pd.DataFrame, *, symbol: str, timeframe: str) -> ValidationReport:
    """Only the per-bar price checks (what would corrupt a backtest's numbers), for the loader.

    The loader runs these on the bars a backtest asked for, also for data stored with
    `--relaxed` (whose gaps or repeated timestamps it accepts): a bar with a bad price
    never reaches a backtest.
    """
    return ValidationReport(
        symbol=symbol,
        timeframe=timeframe,
        bars=len(frame),
        first=frame.index.min().to_pydatetime() if len(frame) else None,
        last=frame.index.max().to_pydatetime() if len(frame) else None,
        max_gap_sessions=0,
        issues=_price_issues(frame, timeframe),
    )


def _order_issues(frame: pd.DataFrame, timeframe: str) -> list[Issue]:
    import pandas as pd

    issues: list[Issue] = []
    index = frame.index.to_series()
    for check, mask, problem in (
        ("duplicate_timestamp", pd.Series(frame.index.duplicated(), index=frame.index), "timestamp appears twice"),
        ("non_monotonic", index.diff() < pd.Timedelta(0), "timestamp is earlier than the bar before it"),
    ):
        if mask.any():
            pos, count = _first(mask)
            when = frame.index[pos]
            issues.append(
                Issue(
                    check=check,
                    severity="error",
                    message=f"bar {stamp(when, timeframe)}: {problem}" + (f"; {count} bars" if count > 1 else ""),
                    bar=when.to_pydatetime(),
                    count=count,
                )
            )
    return issues


def _gap_issues(frame: pd.DataFrame, timeframe: str, max_gap_sessions: int) -> list[Issue]:
    import numpy as np

    days = np.unique(to_utc_index(frame.index).tz_localize(None).to_numpy().astype("datetime64[D]"))
    if len(days) < 2:
        return []
    # business days strictly between consecutive trading days = sessions with no bar
    missing = np.busday_count(days[:-1] + np.timedelta64(1, "D"), days[1:])
    big = np.flatnonzero(missing > max_gap_sessions)
    if big.size == 0:
        return []
    worst = int(big[missing[big].argmax()])
    first = int(big[0])
    after = dt.datetime.combine(days[first + 1].astype(dt.date), dt.time(), tzinfo=dt.UTC)
    return [
        Issue(
            check="gap",
            severity="error",
            message=(
                f"bar {after:%Y-%m-%d}: {int(missing[first])} sessions missing since {days[first]}"
                f" (limit {max_gap_sessions})"
                + (
                    f"; {big.size} such gaps, the largest {int(missing[worst])} sessions before {days[worst + 1]}"
                    if big.size > 1
                    else ""
                )
            ),
            bar=after,
            count=int(big.size),
        )
    ]


def validate_frame(frame: pd.DataFrame, *, symbol: str, timeframe: str, max_gap_sessions: int = 5) -> ValidationReport:
    """Run every check on a frame in the normalized shape (any order); never raises for bad bars."""
    absent = [c for c in COLUMNS if c not in frame.columns]
    first = frame.index.min().to_pydatetime() if len(frame) else None
    last = frame.index.max().to_pydatetime() if len(frame) else None
    common = {
        "symbol": symbol,
        "timeframe": timeframe,
        "bars": len(frame),
        "first": first,
        "last": last,
        "max_gap_sessions": max_gap_sessions,
    }
    if absent:
        issue = Issue(
            check="missing_column",
            severity="error",
            count=len(absent),
            message=f"missing column{'s' if len(absent) > 1 else ''}: {', '.join(absent)}",
        )
        return ValidationReport(**common, issues=[issue])
    if frame.empty:
        return ValidationReport(**common, issues=[Issue(check="empty", severity="error", message="no bars")])
    issues = _order_issues(frame, timeframe) + _bar_issues(frame, timeframe)
    issues += _gap_issues(frame, timeframe, max_gap_sessions)
    return ValidationReport(**common, issues=issues)
