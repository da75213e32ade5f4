"""Emergency-stop latency against the TWS peer: 10 open orders and 5 positions -> confirmed flat.

Run: .venv/bin/python bench/bench_live.py [repeats]. Prints a table; goal < 5 s plus fill time.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kubetrader.live.broker import OrderRequest
from kubetrader.live.ib_broker import IBBroker
from kubetrader.live.stop import emergency_stop
from kubetrader.live.testing.tws_peer import DEFAULT_DATA_DIR, TwsPeer

SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE"]


def one_run(data_dir: Path) -> tuple[float, bool]:
    with TwsPeer(data_dir=data_dir) as peer:
        for symbol in SYMBOLS:
            peer.seed_position(symbol, 100)
        trader = IBBroker("127.0.0.1", peer.port, 1)
        trader.connect()
        for i in range(10):
            trader.place_order(OrderRequest(f"rest-{i}", SYMBOLS[i % 5], "BUY", 10, "LMT", 0.01))
        while len(peer.open_orders()) < 10:
            trader.poll(0.01)
        trader.disconnect()
        stopper = IBBroker("127.0.0.1", peer.port, 999)
        started = time.perf_counter()
        stopper.connect()
        report = emergency_stop(stopper, timeout=30)
        elapsed = time.perf_counter() - started
        stopper.disconnect()
        return elapsed, report.flat and not peer.open_orders() and not peer.positions()


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory() as tmp:
        source = next(DEFAULT_DATA_DIR.glob("orcl-*.txt"))
        for symbol in SYMBOLS:
            shutil.copy(source, Path(tmp) / f"{symbol.lower()}-data.txt")
        runs = [one_run(Path(tmp)) for _ in range(repeats)]
    times = [t for t, _ in runs]
    print(f"{'case':<48} {'runs':>4} {'median s':>9} {'max s':>7} {'all flat':>8}")
    print(
        f"{'emergency stop, 10 orders + 5 positions (connect+confirm)':<48} {repeats:>4} "
        f"{statistics.median(times):>9.3f} {max(times):>7.3f} {all(ok for _, ok in runs)!s:>8}"
    )


if __name__ == "__main__":
    main()
