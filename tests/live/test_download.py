"""`kubetrader live download`: chunk planning and pacing (pure), then against the TWS peer."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetrader.data import DataStore
from kubetrader.errors import SpecError
from kubetrader.live.download import RESOLUTIONS, Chunk, Pacer, download, plan_chunks, resolution
from kubetrader.live.ib_broker import IBBroker
from kubetrader.live.testing.tws_peer import TwsPeer, load_daily_bars
from tests.helpers import ROOT, free_port

DAILY = RESOLUTIONS["daily"]


def test_chunks_cover_the_range_exactly_newest_first_within_a_year_each() -> None:
    chunks = plan_chunks(dt.date(2010, 3, 1), dt.date(2012, 12, 31), DAILY)
    assert chunks[0] == Chunk(dt.date(2012, 12, 31), 365)
    assert [c.duration(DAILY) for c in chunks] == ["1 Y", "1 Y", "307 D"]  # 2010-03-01 .. 2011-01-01
    assert chunks[-1].start == dt.date(2010, 3, 1)
    covered = {c.start + dt.timedelta(days=i) for c in chunks for i in range(c.days)}
    assert len(covered) == sum(c.days for c in chunks) == (dt.date(2012, 12, 31) - dt.date(2010, 3, 1)).days + 1


def test_single_day_and_reversed_ranges() -> None:
    assert plan_chunks(dt.date(2020, 1, 2), dt.date(2020, 1, 2), DAILY) == [Chunk(dt.date(2020, 1, 2), 1)]
    with pytest.raises(SpecError, match="before --start"):
        plan_chunks(dt.date(2020, 1, 2), dt.date(2020, 1, 1), DAILY)
    with pytest.raises(SpecError, match="unknown resolution"):
        resolution("Weekly")
    assert resolution("Daily") is DAILY and resolution("hour").bar_size == "1 hour"


def test_pacer_waits_for_the_window_and_for_the_per_contract_burst_limit() -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    pacer = Pacer(3, 10.0, per_contract=2, per_contract_window=2.0, clock=lambda: clock[0], sleep=sleep)
    for _ in range(2):
        assert pacer.wait_for("A") == 0.0
        pacer.record("A")
    assert pacer.delay("A") == pytest.approx(2.0) and pacer.delay("B") == 0.0
    pacer.wait_for("A")  # third request for A: waits out the 2-second burst window
    pacer.record("A")
    assert clock[0] == pytest.approx(2.01)
    assert pacer.delay("B") == pytest.approx(10.0 - 2.01)  # three requests in the 10-second window
    pacer.wait_for("B")
    assert clock[0] == pytest.approx(10.01)
    assert slept == [pytest.approx(2.01), pytest.approx(8.0)]


def test_pacer_holds_an_identical_request_for_15_seconds_and_backs_off_after_a_violation() -> None:
    """IB's third rule: no identical request within 15 s (a retry after a violation is one)."""
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    pacer = Pacer(clock=lambda: clock[0], sleep=sleep)
    same = ("A", "", "1 D", "1 min")
    pacer.record("A", same)
    assert pacer.delay("A", same) == pytest.approx(15.0)
    assert pacer.delay("A", ("A", "20060103-09:05:00", "1 D", "1 min")) == 0.0  # another end: not identical
    clock[0] = 15.5
    assert pacer.delay("A", same) == 0.0
    assert [pacer.back_off(n) for n in range(7)] == [15.0, 30.0, 60.0, 120.0, 240.0, 480.0, 600.0]


@pytest.fixture
def strict_peer() -> Iterator[TwsPeer]:
    """A peer whose HMDS allows only 3 requests a second: the download must pace itself."""
    with TwsPeer(port=free_port(), historical_limit=(3, 1.0)) as peer:
        yield peer


def expected_days(symbol: str, start: dt.date, end: dt.date) -> int:
    return sum(1 for b in load_daily_bars(symbol) if start <= b.date <= end)


def test_download_is_chunked_paced_and_merged_into_the_store(strict_peer: TwsPeer, tmp_path: Path) -> None:
    store = DataStore(tmp_path / "store")
    broker = IBBroker("127.0.0.1", strict_peer.port, 998, timeout=10)
    broker.connect()
    start, end = dt.date(2010, 1, 1), dt.date(2012, 12, 31)
    try:
        reports = download(broker, ["ORCL", "NVDA"], start, end, DAILY, store, pacer=Pacer(max_requests=3, window=1.0))
    finally:
        broker.disconnect()
    assert [r.requests for r in reports] == [4, 4]  # 1,096 days: three years of 365 and one day
    assert strict_peer.historical_requests == 8  # no request was refused and retried
    assert sum(r.waited for r in reports) > 0  # the pacer, not the peer, kept the limit
    for symbol in ("ORCL", "NVDA"):
        frame = store.read(symbol, "1d")
        assert len(frame) == expected_days(symbol, start, end)
        assert frame.index.is_unique and frame.index.is_monotonic_increasing
    assert reports[0].added == len(store.read("ORCL", "1d"))


def test_download_cli_merges_without_duplicating_on_a_second_run(tws_peer: TwsPeer, tmp_path: Path) -> None:
    args = [
        sys.executable, "-m", "kubetrader.cli.main", "live", "download", "--symbols", "ORCL", "YHOO",
        "--start", "2011-06-01", "--end", "2012-06-30", "--resolution", "Daily",
        "--port", str(tws_peer.port), "--data-dir", str(tmp_path / "store"),
    ]  # fmt: skip
    env = {"PYTHONPATH": f"{ROOT / 'engine'}:{ROOT}", "PATH": "/usr/bin:/bin"}
    first = subprocess.run(args, check=False, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert first.returncode == 0, first.stderr
    orcl_days = expected_days("ORCL", dt.date(2011, 6, 1), dt.date(2012, 6, 30))
    assert f"ORCL: {orcl_days} bars in 2 requests, {orcl_days} new" in first.stdout
    tws_peer.pacing_windows_pass()  # an identical request within 15 s is a pacing violation at IB
    second = subprocess.run(args, check=False, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert second.returncode == 0, second.stderr
    assert f"ORCL: {orcl_days} bars in 2 requests, 0 new" in second.stdout
    assert len(DataStore(tmp_path / "store").read("ORCL", "1d")) == orcl_days


def test_download_without_pacing_fails_loudly_instead_of_storing_a_partial_history(
    strict_peer: TwsPeer, tmp_path: Path
) -> None:
    from kubetrader.live.broker import BrokerUnavailableError

    store = DataStore(tmp_path / "store")
    broker = IBBroker("127.0.0.1", strict_peer.port, 998, timeout=10)
    broker.connect()
    try:
        with pytest.raises(BrokerUnavailableError, match=r"IB error 162.*pacing violation"):
            download(
                broker,
                ["ORCL"],
                dt.date(2008, 1, 1),
                dt.date(2012, 12, 31),
                DAILY,
                store,
                pacer=Pacer(100, violation_retries=0),
            )
    finally:
        broker.disconnect()
    assert not store.path("ORCL", "1d").exists()


def test_the_peer_refuses_an_identical_historical_request_within_15_seconds_as_ib_does(tws_peer: TwsPeer) -> None:
    """IB's pacing rules (historical_limitations.html): an identical request within 15 s is a violation
    (error 162), whatever the 60-per-10-minutes count says. (The six-within-2-s rule is enforced too,
    but a timed assertion would not hold on a loaded machine.)"""
    from kubetrader.live.broker import BrokerUnavailableError

    broker = IBBroker("127.0.0.1", tws_peer.port, 997, timeout=10)
    broker.connect()
    try:
        assert broker.historical_bars("ORCL", dt.date(2012, 6, 29), "1 M", "1 day")
        with pytest.raises(BrokerUnavailableError, match="pacing violation"):
            broker.historical_bars("ORCL", dt.date(2012, 6, 29), "1 M", "1 day")
        assert broker.historical_bars("ORCL", dt.date(2012, 5, 31), "1 M", "1 day")  # another end: not identical
        tws_peer.pacing_windows_pass()
        assert broker.historical_bars("ORCL", dt.date(2012, 6, 29), "1 M", "1 day")
    finally:
        broker.disconnect()
