"""The TWS peer as a gateway process: what `make e2e-sandbox` runs for the IB Gateway image.

    python -m kubetrader.live.testing.gateway [--host 0.0.0.0] [--port N] [--bar-interval S]
                                              [--replay-start SYMBOL=INDEX ...]

The gnzsnz/ib-gateway image the operator's gateway StatefulSet names takes its mode from
`TRADING_MODE` and relays the API with socat on 4003 (live) or 4004 (paper) (README "Live and
paper trading"); without `--port` this listens where that image would. Serves until SIGTERM or
SIGINT (the kubelet's stop), then closes its connections and exits 0. Bad arguments exit 2
naming the option.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType

from kubetrader.live.testing.tws_peer import TwsPeer

SOCAT_PORTS = {"live": 4003, "paper": 4004}  # the image's relays (operator: live/builders.py)


def _replay_start(text: str) -> tuple[str, int]:
    symbol, sep, index = text.partition("=")
    if not sep or not symbol or not index.isdigit():
        raise argparse.ArgumentTypeError(f"expected SYMBOL=INDEX (a bar index), got {text!r}")
    return symbol, int(index)


def parse_args(argv: list[str] | None, environ: dict[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kubetrader.live.testing.gateway", description=__doc__)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, help="default: the image's relay port for TRADING_MODE")
    parser.add_argument("--bar-interval", type=float, default=0.05, help="seconds between replayed bars")
    parser.add_argument("--replay-start", type=_replay_start, action="append", default=[], metavar="SYMBOL=INDEX")
    args = parser.parse_args(argv)
    if args.port is None:
        mode = environ.get("TRADING_MODE", "paper")
        if mode not in SOCAT_PORTS:
            parser.error(f"TRADING_MODE: expected one of {', '.join(SOCAT_PORTS)}, got {mode!r}")
        args.port = SOCAT_PORTS[mode]
    if not 0 < args.port < 65536:
        parser.error(f"--port: expected 1..65535, got {args.port}")
    if args.bar_interval <= 0:
        parser.error(f"--bar-interval: expected a positive number of seconds, got {args.bar_interval}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, dict(os.environ))
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    peer = TwsPeer(host=args.host, port=args.port, bar_interval=args.bar_interval, replay_start=dict(args.replay_start))
    peer.start()
    sys.stdout.write(f"TWS peer listening on {args.host}:{peer.port}\n")
    sys.stdout.flush()
    stop.wait()
    peer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
