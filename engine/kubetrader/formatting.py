"""How numbers, dates and metric names read to a person: one set of pure functions for the
tearsheet, the CLI's tables and every dashboard tab, so a value looks the same everywhere.

- fractions as percent (`0.8398` -> `83.98%`), drawdowns negative as stored;
- money with thousands separators (`183,975.31`);
- ratios with two decimals (`0.81`), counts as integers, durations in days;
- dates in the exchange's time zone: a daily bar's timestamp (midnight UTC, the session's
  date) as the date alone, an intraday one converted (`2014-12-16 10:35`);
- MLflow's epoch milliseconds as dates and times;
- a missing value as `MISSING`, never `None` or `nan`.

Labels, units and descriptions of the metrics come from `kubetrader.specs.metrics.METRICS`.
Standard library only: the API, the operator and the CLI import it without pandas.
"""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

from kubetrader.specs.metrics import GROUP_LABELS, METRICS

MISSING = "—"
# The bundled data and the live sessions are US equities (kubetrader.live.session's default).
EXCHANGE_TIMEZONE = "America/New_York"


def _finite(value: float | None) -> bool:
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


def percent(value: float | None, digits: int = 2) -> str:
    """A fraction as percent: 0.8398 -> '83.98%'."""
    return f"{value:.{digits}%}" if _finite(value) else MISSING


def money(value: float | None, digits: int = 2) -> str:
    """183975.3057 -> '183,975.31'."""
    return f"{value:,.{digits}f}" if _finite(value) else MISSING


def number(value: float | None, digits: int = 2) -> str:
    return f"{value:,.{digits}f}" if _finite(value) else MISSING


def count(value: float | None) -> str:
    return f"{value:,.0f}" if _finite(value) else MISSING


def metric_label(name: str) -> str:
    """The human name of a metric ('Sharpe', 'Max drawdown'); unknown names read as words."""
    info = METRICS.get(name)
    return info.label if info else name.replace("_", " ").capitalize()


def metric_help(name: str) -> str:
    """What a metric means, for a tooltip."""
    info = METRICS.get(name)
    return info.description if info else ""


def group_label(group: str) -> str:
    return GROUP_LABELS.get(group, group.replace("_", " ").capitalize())


def metric_value(name: str, value: float | None) -> str:
    """A metric's value in its unit: '12.34%', '1,234.56', '48', '120 days', '0.81' or MISSING."""
    if not _finite(value):
        return MISSING
    unit = METRICS[name].unit if name in METRICS else "ratio"
    if unit == "fraction":
        return percent(value)
    if unit == "money":
        return money(value)
    if unit == "count":
        return count(value)
    if unit == "days":
        return f"{count(value)} days"
    return number(value)


def is_percent_metric(name: str) -> bool:
    return name in METRICS and METRICS[name].unit == "fraction"


def _zone(tz: str | None) -> ZoneInfo:
    return ZoneInfo(tz or EXCHANGE_TIMEZONE)


def timestamp(value: str | dt.datetime | None, tz: str | None = None) -> str:
    """An ISO timestamp as the exchange reads it: midnight UTC (a daily bar) as its date, else local time."""
    if value is None or value == "":
        return MISSING
    try:
        when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    utc = when.astimezone(dt.UTC)
    if (utc.hour, utc.minute, utc.second, utc.microsecond) == (0, 0, 0, 0):
        return utc.date().isoformat()
    return when.astimezone(_zone(tz)).strftime("%Y-%m-%d %H:%M")


def epoch_ms(value: int | float | None, tz: str | None = None) -> str:
    """MLflow's start/end times (milliseconds since the epoch) as 'YYYY-MM-DD HH:MM' in the zone."""
    if not _finite(value):
        return MISSING
    assert value is not None
    return dt.datetime.fromtimestamp(value / 1000, tz=_zone(tz)).strftime("%Y-%m-%d %H:%M")


def plain(text: str | None) -> str:
    """Text without Markdown's inline code marks (descriptions written for docstrings)."""
    return MISSING if text is None else text.replace("`", "")
