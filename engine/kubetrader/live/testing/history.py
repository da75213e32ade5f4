"""The peer's historical data service (HMDS): IB's request limits, and the bars it answers with (pure).

Limits, as IB documents them for reqHistoricalData:

- bar sizes: the legal `barSizeSetting`s; any other is refused with error 321 and the list
  (IB's own message, quoted in https://github.com/dshe/InterReact/issues/16);
- the longest duration per bar size: the "Step Sizes" table of
  https://interactivebrokers.github.io/tws-api/historical_limitations.html (duration -> the
  bar sizes it allows: 1800 S for 1 secs ... 1 D for 1 min, 2 D for 2 mins, 1 W for 3 to
  20 mins, 1 M for 30 mins to 8 hours, 1 Y for 1 day). A longer request is refused with error
  162 "Historical Market Data Service error message:Time length exceed max." (the text IB sends;
  e.g. ib_async and Lean handle it by that text). IB's newer pages list longer maxima for the
  larger bars (https://www.interactivebrokers.com/docs/tws-api/doc/market-data-historical/historical-bars/max-duration-per-bar-size);
  the peer keeps the older, stricter table, so a client that fits it fits both;
- pacing (the peer's `_historical_paced`): 162 "... Historical data request pacing violation".

Bars: daily bars as before (the bundled Yahoo files); an intraday symbol (`INTRADAY`) is
served from its bundled file of 5-minute bars, as 5-minute bars or aggregated to hours (UTC
hour buckets, the file's own grid), each labelled by its start in UTC, as IB labels intraday
bars. The peer has no 1-minute data: a 1 min request is answered "HMDS query returned no data"
(the limits above are checked first, as IB does).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

HMDS = "Historical Market Data Service error message:"
TIME_LENGTH_EXCEEDED = HMDS + "Time length exceed max."
PACING_VIOLATION = HMDS + "Historical data request pacing violation"
NO_DATA = HMDS + "HMDS query returned no data"

LEGAL_BAR_SIZES = ("1 secs", "5 secs", "10 secs", "15 secs", "30 secs", "1 min", "2 mins", "3 mins", "5 mins",
                   "10 mins", "15 mins", "20 mins", "30 mins", "1 hour", "2 hours", "3 hours", "4 hours",
                   "8 hours", "1 day", "1W", "1M")  # fmt: skip
INVALID_BAR_SIZE = ("Error validating request:-'bP' : cause - Historical data bar size setting is invalid. "
                    "Legal ones are: " + ", ".join(LEGAL_BAR_SIZES) + "--")  # fmt: skip

DAY = 86_400
UNIT_SECONDS = {"S": 1, "D": DAY, "W": 7 * DAY, "M": 31 * DAY, "Y": 366 * DAY}
# The longest duration for each bar size, from the Step Sizes table (see the module docstring).
MAX_DURATION: dict[str, str] = {
    "1 secs": "1800 S", "5 secs": "3600 S", "10 secs": "14400 S", "15 secs": "14400 S", "30 secs": "28800 S",
    "1 min": "1 D", "2 mins": "2 D", "3 mins": "1 W", "5 mins": "1 W", "10 mins": "1 W", "15 mins": "1 W",
    "20 mins": "1 W", "30 mins": "1 M", "1 hour": "1 M", "2 hours": "1 M", "3 hours": "1 M", "4 hours": "1 M",
    "8 hours": "1 M", "1 day": "1 Y", "1W": "1 Y", "1M": "1 Y",
}  # fmt: skip
BAR_SECONDS = {"5 mins": 300, "1 hour": 3600}  # the intraday sizes the peer has data for
# Symbols replayed and served from bundled intraday bars: symbol -> (bundled timeframe, bar seconds).
INTRADAY: dict[str, tuple[str, int]] = {"IDX2006": ("5m", 300)}


def duration_seconds(duration: str) -> int | None:
    """IB's durationStr ("N S|D|W|M|Y") in seconds, months and years counted long; None if malformed."""
    count, _, unit = duration.strip().partition(" ")
    if not count.isdigit() or unit not in UNIT_SECONDS or int(count) <= 0:
        return None
    return int(count) * UNIT_SECONDS[unit]


@dataclass(frozen=True)
class Refusal:
    code: int
    message: str


def check_request(bar_size: str, duration: str) -> Refusal | None:
    """What IB answers a request with this bar size and duration when it breaks a limit, or None."""
    if bar_size not in LEGAL_BAR_SIZES:
        return Refusal(321, INVALID_BAR_SIZE)
    seconds = duration_seconds(duration)
    if seconds is None:
        return Refusal(
            321, f"Error validating request:-'bQ' : cause - Historical data duration {duration!r} is invalid"
        )
    limit = duration_seconds(MAX_DURATION[bar_size])
    assert limit is not None
    if seconds > limit:
        return Refusal(162, TIME_LENGTH_EXCEEDED)
    return None


def parse_end(text: str) -> dt.datetime | None:
    """IB's endDateTime: "" (now), "yyyymmdd-hh:mm:ss" (UTC), "yyyymmdd hh:mm:ss[ zone]" (the zone or,
    without one, the peer's own time zone, UTC), or a bare date (its end)."""
    from zoneinfo import ZoneInfo

    text = text.strip()
    if not text:
        return None
    if "-" in text:
        return dt.datetime.strptime(text, "%Y%m%d-%H:%M:%S").replace(tzinfo=dt.UTC)
    parts = text.split()
    if len(parts) == 1:
        day = dt.datetime.strptime(parts[0], "%Y%m%d")
        return day.replace(hour=23, minute=59, second=59, tzinfo=dt.UTC)
    when = dt.datetime.strptime(parts[0] + parts[1], "%Y%m%d%H:%M:%S")
    return when.replace(tzinfo=ZoneInfo(parts[2]) if len(parts) > 2 else dt.UTC).astimezone(dt.UTC)


@dataclass(frozen=True)
class IntradayBar:
    start: dt.datetime  # UTC
    seconds: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    @property
    def date(self) -> dt.date:
        return self.start.date()


def load_intraday_bars(symbol: str) -> list[IntradayBar]:
    """The bundled intraday bars of `symbol` (INTRADAY), read as the store reads them (UTC labels)."""
    from kubetrader.data.bundled import BUNDLED, bundled_dir
    from kubetrader.data.readers import read_bars

    timeframe, seconds = INTRADAY[symbol]
    entry = BUNDLED[(symbol, timeframe)]
    frame, _ = read_bars(bundled_dir() / entry.file, entry.fmt)
    o, h, low, c, v = (
        frame[column].to_numpy(dtype=float).tolist() for column in ("open", "high", "low", "close", "volume")
    )
    rows = zip(frame.index, o, h, low, c, v, strict=True)
    return [IntradayBar(t.to_pydatetime(), seconds, *prices) for t, *prices in rows]


def aggregate(bars: list[IntradayBar], seconds: int) -> list[IntradayBar]:
    """Bars of `seconds` (a multiple of theirs) on the UTC grid, from consecutive bars (oldest first)."""
    out: list[IntradayBar] = []
    for bar in bars:
        epoch = int(bar.start.timestamp())
        start = dt.datetime.fromtimestamp(epoch - epoch % seconds, dt.UTC)
        if out and out[-1].start == start:
            last = out[-1]
            out[-1] = IntradayBar(start, seconds, last.open, max(last.high, bar.high), min(last.low, bar.low),
                                  bar.close, last.volume + bar.volume)  # fmt: skip
        else:
            out.append(IntradayBar(start, seconds, bar.open, bar.high, bar.low, bar.close, bar.volume))
    return out


def intraday_answer(
    bars: list[IntradayBar], bar_size: str, end: dt.datetime | None, duration: str, now: dt.datetime
) -> list[IntradayBar]:
    """The bars of a request: those of `bar_size` that start within `duration` before `end` (None: now)
    and have ended by then, never past the replay's `now` (an hour still forming is IB's partial bar,
    ending at `now`)."""
    size = BAR_SECONDS.get(bar_size)
    if size is None:
        return []
    seconds = duration_seconds(duration)
    assert seconds is not None
    upto = min(end, now) if end is not None else now
    since = upto - dt.timedelta(seconds=seconds)
    replayed = [b for b in bars if b.start + dt.timedelta(seconds=b.seconds) <= now]
    grouped = replayed if size == bars[0].seconds else aggregate(replayed, size)
    return [b for b in grouped if since <= b.start and b.start < upto]
