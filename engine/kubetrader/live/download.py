"""Historical bars from IB: chunked `reqHistoricalData`, paced within IB's limits, merged into the store.

IB serves a bounded duration per request (a year of daily bars, a month of hourly, a
week of 5-minute bars, a day of minutes: the "Step Sizes" table of
https://interactivebrokers.github.io/tws-api/historical_limitations.html; a longer one is
refused with error 162 "Time length exceed max.") and enforces pacing for historical data:
at most 60 requests in any 10 minutes, no 6 or more requests for the same contract within
2 seconds, no identical request within 15 seconds (the same page). A violation costs an
error 162 and, repeated, the connection. So every request waits for the `Pacer`'s
permission first (`paced_request`), instead of retrying after IB complains; and when IB
complains all the same (another client of the login, IB's own soft throttle), the same
request is made again after a growing pause, and its answer is the only one kept for it:
nothing lost, nothing twice.

Two ways through history: `download` covers a date range with planned chunks (pure:
`plan_chunks`); the runner's warm-up pages back from now (`page_back`, IB's way: the next
request ends where the earliest bar held begins).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kubetrader.errors import SpecError
from kubetrader.live.broker import Bar, Broker, PacingViolationError

if TYPE_CHECKING:
    import pandas as pd

    from kubetrader.data.store import DataStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resolution:
    bar_size: str  # IB's barSizeSetting
    timeframe: str  # the store's timeframe
    chunk_days: int  # calendar days per request
    duration: str  # IB's durationStr for one full chunk


# Chunk sizes stay inside IB's documented "maximum duration by bar size".
RESOLUTIONS: dict[str, Resolution] = {
    "daily": Resolution("1 day", "1d", 365, "1 Y"),
    "hour": Resolution("1 hour", "1h", 30, "1 M"),
    "5min": Resolution("5 mins", "5m", 7, "1 W"),
    "minute": Resolution("1 min", "1m", 1, "1 D"),
}


@dataclass(frozen=True)
class WarmupPlan:
    """The runner's warm-up for a timeframe: `requests` of the resolution's longest duration, back
    from now (`page_back`)."""

    resolution: Resolution
    requests: int


# `spec.timeframe` -> the warm-up from IB history that readies the strategy's indicators at the first
# live bar: a year of daily bars; two months of hours; two weeks of 5-minute bars; five days of
# minutes (five requests for one contract: the Pacer spaces a sixth by 2 s, IB's six-in-2-s rule).
WARMUP: dict[str, WarmupPlan] = {
    "1d": WarmupPlan(RESOLUTIONS["daily"], 1),
    "1h": WarmupPlan(RESOLUTIONS["hour"], 2),
    "5m": WarmupPlan(RESOLUTIONS["5min"], 2),
    "1m": WarmupPlan(RESOLUTIONS["minute"], 5),
}


def resolution(name: str) -> Resolution:
    found = RESOLUTIONS.get(name.lower())
    if found is None:
        raise SpecError("--resolution", f"unknown resolution {name!r}; known: Daily, Hour, 5min, Minute")
    return found


@dataclass(frozen=True)
class Chunk:
    end: dt.date  # inclusive
    days: int

    @property
    def start(self) -> dt.date:
        return self.end - dt.timedelta(days=self.days - 1)

    def duration(self, res: Resolution) -> str:
        if self.days == res.chunk_days:
            return res.duration
        return f"{self.days} D"


def plan_chunks(start: dt.date, end: dt.date, res: Resolution) -> list[Chunk]:
    """Requests that cover [start, end] exactly, newest first (IB counts durations back from the end)."""
    if end < start:
        raise SpecError("--end", f"{end} is before --start {start}")
    chunks = []
    cursor = end
    while cursor >= start:
        days = min(res.chunk_days, (cursor - start).days + 1)
        chunks.append(Chunk(cursor, days))
        cursor -= dt.timedelta(days=days)
    return chunks


@dataclass
class Pacer:
    """Grants requests within IB's historical-data pacing; `wait_for` sleeps only as long as needed."""

    max_requests: int = 60
    window: float = 600.0
    per_contract: int = 5  # fewer than 6 ...
    per_contract_window: float = 2.0  # ... within 2 s
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    # After a pacing violation all the same: pause 15 s (an identical request sooner is itself a
    # violation), doubling up to the 10-minute window, at most `violation_retries` times.
    violation_retries: int = 7
    violation_pause: float = 15.0
    identical_window: float = 15.0  # no identical request within 15 s
    _all: deque[float] = field(default_factory=deque)
    _by_contract: dict[str, deque[float]] = field(default_factory=dict)
    _identical: dict[tuple[str, ...], float] = field(default_factory=dict)

    def delay(self, contract: str, request: tuple[str, ...] | None = None) -> float:
        """Seconds until a request for `contract` (`request`: its identity) is allowed (0 = now).
        Pure given the history."""
        now = self.clock()
        waits = [0.0]
        last = self._identical.get(request) if request is not None else None
        if last is not None:
            waits.append(last + self.identical_window - now)
        if len(self._all) >= self.max_requests:
            waits.append(self._all[-self.max_requests] + self.window - now)
        mine = self._by_contract.get(contract, deque())
        if len(mine) >= self.per_contract:
            waits.append(mine[-self.per_contract] + self.per_contract_window - now)
        return max(waits)

    def wait_for(self, contract: str, request: tuple[str, ...] | None = None) -> float:
        """Block until a request for `contract` is allowed; returns the time waited.

        Call `record` once the request has been answered: stamping the answer, not the
        grant, errs on the safe side of IB's clock (the request left before the answer came).
        """
        waited = 0.0
        while (delay := self.delay(contract, request)) > 0:
            # a small margin: IB's clock and ours are not the same clock
            self.sleep(delay + 0.01)
            waited += delay + 0.01
        return waited

    def back_off(self, attempt: int) -> float:
        """Sleep after the `attempt`-th violation in a row (0-based); returns the pause."""
        pause = min(self.window, self.violation_pause * 2**attempt)
        self.sleep(pause)
        return pause

    def record(self, contract: str, request: tuple[str, ...] | None = None) -> None:
        now = self.clock()
        if request is not None:
            self._identical[request] = now
            for key in [k for k, at in self._identical.items() if now - at > self.identical_window]:
                del self._identical[key]
        self._all.append(now)
        self._by_contract.setdefault(contract, deque()).append(now)
        while self._all and now - self._all[0] > self.window:
            self._all.popleft()


@dataclass
class DownloadReport:
    symbol: str
    requests: int
    bars: int
    waited: float
    added: int = 0


def bars_to_frame(bars: list[Bar]) -> pd.DataFrame:
    """Bars (any order, possibly overlapping chunks) -> a frame the store accepts: UTC index, unique."""
    import pandas as pd

    index = pd.DatetimeIndex([b.time for b in bars], name="datetime")
    index = index.tz_convert("UTC") if index.tz is not None else index.tz_localize("UTC")
    frame = pd.DataFrame(
        {
            "open": [b.open for b in bars],
            "high": [b.high for b in bars],
            "low": [b.low for b in bars],
            "close": [b.close for b in bars],
            "volume": [b.volume for b in bars],
        },
        index=index,
    )
    return frame[~frame.index.duplicated(keep="last")].sort_index()


def paced_request(
    broker: Broker,
    pacer: Pacer,
    symbol: str,
    end: dt.date | None,
    duration: str,
    bar_size: str,
    *,
    retries: int | None = None,
) -> tuple[list[Bar], float]:
    """One historical request within the pacing rules, made again after a pacing violation (at most
    `retries` times, default the Pacer's); the bars and the seconds waited. Every request made is
    recorded, a refused one too (IB may count it). Other errors are raised: a retry of those is the
    caller's decision."""
    identity = (symbol, end.isoformat() if end else "", duration, bar_size)
    retries = pacer.violation_retries if retries is None else retries
    waited = 0.0
    attempt = 0
    while True:
        waited += pacer.wait_for(symbol, identity)
        try:
            bars = broker.historical_bars(symbol, end, duration, bar_size)
        except PacingViolationError as exc:
            pacer.record(symbol, identity)
            if attempt >= retries:
                raise
            log.warning("%s: %s; the same request again after a pause", symbol, exc)
            waited += pacer.back_off(attempt)
            attempt += 1
            continue
        except BaseException:
            pacer.record(symbol, identity)
            raise
        pacer.record(symbol, identity)
        return bars, waited


def page_back(
    broker: Broker,
    symbol: str,
    res: Resolution,
    requests: int,
    pacer: Pacer,
    *,
    now: dt.datetime,
    end: dt.date | None = None,
) -> list[Bar]:
    """`requests` requests of `res`'s longest duration, newest first, each ending where the earliest
    bar held so far begins (IB's way back through history); `end` None: the first ends now. An answer
    with nothing older (a weekend, a holiday) moves the next end back by a full duration, so no
    window is asked for twice and none is skipped. Oldest first, one bar per time (the newest
    answer's, where two overlap)."""
    held: dict[dt.datetime, Bar] = {}
    cursor: dt.date | None = end
    span = dt.timedelta(days=res.chunk_days)
    for _ in range(requests):
        got, _ = paced_request(broker, pacer, symbol, cursor, res.duration, res.bar_size)
        earliest = min(held) if held else None
        older = [b for b in got if earliest is None or b.time < earliest]
        for bar in got:
            held.setdefault(bar.time, bar)
        if older:
            cursor = min(b.time for b in older)
        else:
            base = cursor if isinstance(cursor, dt.datetime) else now if cursor is None else _day_end(cursor)
            cursor = base - span
    return [held[t] for t in sorted(held)]


def _day_end(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=dt.UTC)


def download_symbol(
    broker: Broker, symbol: str, start: dt.date, end: dt.date, res: Resolution, pacer: Pacer
) -> tuple[list[Bar], DownloadReport]:
    """Every bar of `symbol` in [start, end], one paced request per chunk."""
    bars: list[Bar] = []
    waited = 0.0
    chunks = plan_chunks(start, end, res)
    for chunk in chunks:
        got, paused = paced_request(broker, pacer, symbol, chunk.end, chunk.duration(res), res.bar_size)
        waited += paused
        bars.extend(b for b in got if start <= b.time.date() <= end)
        log.info("%s: %d bars up to %s (%s)", symbol, len(got), chunk.end, chunk.duration(res))
    return bars, DownloadReport(symbol, len(chunks), len({b.time for b in bars}), waited)


def download(
    broker: Broker,
    symbols: list[str],
    start: dt.date,
    end: dt.date,
    res: Resolution,
    store: DataStore,
    *,
    pacer: Pacer | None = None,
) -> list[DownloadReport]:
    """Download and merge each symbol into the store (newer bars win, nothing duplicated)."""
    pacer = pacer or Pacer()
    reports = []
    for symbol in symbols:
        bars, report = download_symbol(broker, symbol, start, end, res, pacer)
        if bars:
            merged = store.merge(symbol, res.timeframe, bars_to_frame(bars), source="ib")
            report.added = merged.added
        reports.append(report)
    return reports
