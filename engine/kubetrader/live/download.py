"""Historical bars from IB: chunked `reqHistoricalData`, paced within IB's limits, merged into the store.

IB serves a bounded duration per request (a year of daily bars, a month of hourly,
a day of minutes) and enforces pacing for historical data: at most 60 requests in
any 10 minutes, no 6 or more requests for the same contract within 2 seconds, no
identical request within 15 seconds. A violation costs an error 162 and, repeated,
the connection. So the download is planned (pure: `plan_chunks`) and every request
waits for the `Pacer`'s permission first, instead of retrying after IB complains.
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
from kubetrader.live.broker import Bar, Broker

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
    "minute": Resolution("1 min", "1m", 1, "1 D"),
}


def resolution(name: str) -> Resolution:
    found = RESOLUTIONS.get(name.lower())
    if found is None:
        raise SpecError("--resolution", f"unknown resolution {name!r}; known: Daily, Hour, Minute")
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
    _all: deque[float] = field(default_factory=deque)
    _by_contract: dict[str, deque[float]] = field(default_factory=dict)

    def delay(self, contract: str) -> float:
        """Seconds until a request for `contract` is allowed (0 = now). Pure given the history."""
        now = self.clock()
        waits = [0.0]
        if len(self._all) >= self.max_requests:
            waits.append(self._all[-self.max_requests] + self.window - now)
        mine = self._by_contract.get(contract, deque())
        if len(mine) >= self.per_contract:
            waits.append(mine[-self.per_contract] + self.per_contract_window - now)
        return max(waits)

    def wait_for(self, contract: str) -> float:
        """Block until a request for `contract` is allowed; returns the time waited.

        Call `record` once the request has been answered: stamping the answer, not the
        grant, errs on the safe side of IB's clock (the request left before the answer came).
        """
        waited = 0.0
        while (delay := self.delay(contract)) > 0:
            # a small margin: IB's clock and ours are not the same clock
            self.sleep(delay + 0.01)
            waited += delay + 0.01
        return waited

    def record(self, contract: str) -> None:
        now = self.clock()
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


def download_symbol(
    broker: Broker, symbol: str, start: dt.date, end: dt.date, res: Resolution, pacer: Pacer
) -> tuple[list[Bar], DownloadReport]:
    """Every bar of `symbol` in [start, end], one paced request per chunk."""
    bars: list[Bar] = []
    waited = 0.0
    chunks = plan_chunks(start, end, res)
    for chunk in chunks:
        waited += pacer.wait_for(symbol)
        try:
            got = broker.historical_bars(symbol, chunk.end, chunk.duration(res), res.bar_size)
        finally:
            pacer.record(symbol)  # a refused request counts against the limit too
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
