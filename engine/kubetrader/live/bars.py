"""Live bars at the spec's timeframe: IB's 5-second real-time bars aggregated on the exchange calendar.

IB streams real-time bars of 5 seconds only (`reqRealTimeBars`: "only 5 second bars are
supported", https://interactivebrokers.github.io/tws-api/realtime_bars.html); a strategy
written against `1d` (or `1h`, `5m`, `1m`) bars in its backtest must see bars of that size
live, cut where the backtest's are:

- intraday bars start at the session's open and every `size` after it, and the last one
  of a session ends at the close (an early close makes it short); no bar spans a session
  break, so bars of two sessions are never merged;
- a daily bar is the whole session, from the open to the close (early closes included),
  labelled like the store's daily bars: the session's date at midnight UTC;
- intraday bars are labelled by their start in UTC, as IB's historical bars (and so the
  store's IB downloads) are;
- a bar is complete, and handed over, when the 5-second bar that ends at its end arrives,
  or the first 5-second bar after it (a quiet last interval);
- the first bar after a subscription made in the middle of it lacks its beginning: it is
  handed over all the same, and its label noted in `partial` (the session takes that bar
  from IB's history instead, `Session._completed`).

Sessions come from `exchange_calendars` (a well-kept library with each exchange's
holidays and early closes; XNYS for the US stocks the bundled data holds). Pure: bars in,
bars out; the session feeds it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from kubetrader.live.broker import Bar

REALTIME_SECONDS = 5
TIMEFRAME_SECONDS = {"1m": 60, "5m": 300, "1h": 3600, "1d": 0}  # 0: the whole session
DEFAULT_CALENDAR = "XNYS"  # NYSE: the sessions of the US stocks traded through SMART


@dataclass(frozen=True)
class TradingSession:
    open: dt.datetime  # UTC
    close: dt.datetime  # UTC

    @property
    def date(self) -> dt.date:
        return self.open.date()


class ExchangeCalendar:
    """The sessions of one exchange (exchange_calendars), looked up by the UTC time of a bar."""

    def __init__(self, name: str = DEFAULT_CALENDAR) -> None:
        self.name = name
        self._calendar: Any = None
        self._last: TradingSession | None = None  # most bars fall in the session before them

    def _cal(self, around: dt.datetime) -> Any:
        import exchange_calendars

        cal = self._calendar
        if cal is None or not (cal.first_session.date() <= around.date() <= cal.last_session.date()):
            start = (around - dt.timedelta(days=400)).date().isoformat()
            end = (around + dt.timedelta(days=400)).date().isoformat()
            cal = exchange_calendars.get_calendar(self.name, start=start, end=end)
            self._calendar = cal
        return cal

    def session_on(self, day: dt.date) -> TradingSession | None:
        """The session of the date `day`, or None when the exchange does not trade that day."""
        import pandas as pd

        cal = self._cal(dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC))
        label = pd.Timestamp(day)
        if not cal.is_session(label):
            return None
        return TradingSession(cal.session_open(label).to_pydatetime(), cal.session_close(label).to_pydatetime())

    def session_of(self, when: dt.datetime) -> TradingSession | None:
        """The session trading at `when` (UTC), or None outside every session (nights, holidays)."""
        import pandas as pd

        last = self._last
        if last is not None and last.open <= when < last.close:
            return last
        cal = self._cal(when)
        minute = pd.Timestamp(when).floor("min")
        if not cal.is_trading_minute(minute):
            return None
        session = cal.minute_to_session(minute)
        found = TradingSession(cal.session_open(session).to_pydatetime(), cal.session_close(session).to_pydatetime())
        self._last = found
        return found


@lru_cache(maxsize=8)
def calendar(name: str = DEFAULT_CALENDAR) -> ExchangeCalendar:
    return ExchangeCalendar(name)


def bucket(when: dt.datetime, timeframe: str, session: TradingSession) -> tuple[dt.datetime, dt.datetime]:
    """The [start, end) of the `timeframe` bar holding `when`, cut at the session's open and close."""
    size = TIMEFRAME_SECONDS[timeframe]
    if size == 0:
        return session.open, session.close
    offset = int((when - session.open).total_seconds()) // size * size
    start = session.open + dt.timedelta(seconds=offset)
    return start, min(start + dt.timedelta(seconds=size), session.close)


def label(start: dt.datetime, timeframe: str, session: TradingSession) -> dt.datetime:
    """How a bar is stamped: the session's date at midnight UTC for daily bars, the start otherwise."""
    if TIMEFRAME_SECONDS[timeframe] == 0:
        return dt.datetime.combine(session.date, dt.time(), tzinfo=dt.UTC)
    return start


class BarAggregator:
    """5-second bars of one symbol in, completed `timeframe` bars out (see the module docstring)."""

    def __init__(self, symbol: str, timeframe: str, cal: ExchangeCalendar | None = None) -> None:
        if timeframe not in TIMEFRAME_SECONDS:
            raise ValueError(f"timeframe {timeframe!r}: one of {', '.join(TIMEFRAME_SECONDS)}")
        self.symbol = symbol
        self.timeframe = timeframe
        self.calendar = cal or calendar()
        self._key: tuple[dt.datetime, dt.datetime] | None = None
        self._session: TradingSession | None = None
        self._bar: list[float] | None = None  # open, high, low, close, volume
        self.last: dt.datetime | None = None  # the start of the last 5-second bar taken
        self.first: dt.datetime | None = None  # the start of the first 5-second bar taken
        self.partial: set[dt.datetime] = set()  # labels of bars handed over without their beginning

    def add(self, bar: Bar) -> list[Bar]:
        """Fold in one 5-second bar (its start in UTC); returns the bars it completes, oldest first."""
        when = bar.time.astimezone(dt.UTC)
        if self.last is not None and when <= self.last:
            return []  # a repeat (a resubscription replays the latest bar): never counted twice
        self.last = when
        if self.first is None:
            self.first = when
        done: list[Bar] = []
        session = self.calendar.session_of(when)
        if session is None:
            return self.flush()  # outside the session (pre/post market prints): not part of any bar
        key = bucket(when, self.timeframe, session)
        if self._key is not None and key != self._key:
            done += self.flush()
        if self._bar is None:
            self._key, self._session = key, session
            self._bar = [bar.open, bar.high, bar.low, bar.close, bar.volume]
        else:
            b = self._bar
            b[1], b[2], b[3], b[4] = max(b[1], bar.high), min(b[2], bar.low), bar.close, b[4] + bar.volume
        if when + dt.timedelta(seconds=REALTIME_SECONDS) >= key[1]:
            done += self.flush()  # the 5-second bar that ends at the bar's end completes it
        return done

    def flush(self) -> list[Bar]:
        """Hand over the bar being built, if any (its interval is over)."""
        if self._bar is None or self._key is None or self._session is None:
            return []
        o, h, low, c, v = self._bar
        out = Bar(self.symbol, label(self._key[0], self.timeframe, self._session), o, h, low, c, v)
        if self.first is not None and self._key[0] < self.first:
            self.partial.add(out.time)  # begun before the first 5-second bar this aggregator saw
        self._bar, self._key, self._session = None, None, None
        return [out]
