"""The emergency stop's randomized fault campaign at scale (kubetrader.live.testing.campaign).

1,000 seeds by default: each draws a book (stocks, an option, a second account, resting
orders) and composed faults (position lag, partial fills, PendingCancel windows,
skipped/duplicated orderStatus, rejects, a halt, a socket cut, 1100, a second
flattener), stops it through the real ib_insync client, and checks the invariants.
Prints false flats (goal 0), invariant violations, blocked stops by reason, and the
stop-latency distribution.

Run: .venv/bin/python bench/bench_live_campaign.py [seeds] [minutes]
With `minutes`, it stops starting seeds after that long (a loaded machine) and says how
many ran. A violation is printed with its seed as soon as it is found (a long run shows
what it has): `tests/live/test_stop_campaign.py` reproduces a seed.
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from collections import Counter

from kubetrader.live.testing.campaign import Scenario, run, scenario, violations
from kubetrader.live.testing.tws_peer import TwsPeer


def main() -> None:
    args = sys.argv[1:] if __name__ == "__main__" else []
    seeds = int(args[0]) if args and args[0].isdigit() else 1000
    budget = float(args[1]) * 60 if len(args) > 1 else float("inf")
    ran = 0
    latencies: list[float] = []
    blocked: Counter[str] = Counter()
    causes: Counter[str] = Counter()  # why a stop that did not end flat could not: the scenario's design
    problems: list[tuple[int, list[str]]] = []
    false_flats = 0
    started = time.perf_counter()
    with TwsPeer(bar_interval=0.01, replay_start={"ORCL": 4300, "NVDA": 3000, "YHOO": 4000}) as peer:
        for seed in range(seeds):
            if time.perf_counter() - started > budget:
                break
            outcome = run(peer, scenario(seed))
            ran += 1
            false_flats += outcome.false_flat
            found = violations(outcome)
            if found:
                problems.append((seed, found))
                print(f"  seed {seed}: {'; '.join(found)}", flush=True)
            if ran % 100 == 0:
                elapsed = time.perf_counter() - started
                print(f"  ... {ran} seeds, {false_flats} false flats, {elapsed:.0f} s", flush=True)
            if outcome.report.flat:
                latencies.append(outcome.seconds)
            else:
                # the reason without the numbers that differ run to run
                blocked[re.sub(r"[0-9.]+", "#", outcome.report.message)[:110]] += 1
                causes[_cause(outcome.scenario)] += 1
    print(f"{'seeds':<28} {ran} of {seeds}" + (" (time budget reached)" if ran < seeds else ""))
    print(f"{'false flats (goal 0)':<28} {false_flats}")
    print(f"{'invariant violations':<28} {len(problems)}")
    for seed, found in problems[:10]:
        print(f"  seed {seed}: {'; '.join(found)}")
    print(f"{'confirmed flat':<28} {len(latencies)}")
    print(f"{'not flat (blocked/timeout)':<28} {sum(blocked.values())}: " + ", ".join(
        f"{n} {cause}" for cause, n in causes.most_common()))  # fmt: skip
    for reason, n in blocked.most_common(8):
        print(f"  {n:>4} x {reason}")
    if latencies:
        q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
        spread = f"p50 {q[49]:.2f}  p90 {q[89]:.2f}  p99 {q[98]:.2f}  max {max(latencies):.2f}"
        print(f"{'stop latency s (flat)':<28} {spread}")
    print(f"{'wall time s':<28} {time.perf_counter() - started:.0f}")


def _cause(s: Scenario) -> str:
    """What in a scenario lets its stop end NOT flat (a violation when nothing does)."""
    if s.permanent_reject:
        return "with every close of a symbol rejected (201)"
    if s.halt and s.unhalt_after is None:
        return "with a halt that never lifts"
    return "that could have finished (violations)"


if __name__ == "__main__":
    main()
