"""Walk-forward windows: optimise in sample, test the winner on the next unseen stretch.

Windows are in bars (trading days for daily data). Out-of-sample windows follow one
another without overlap and without gaps, so their stitched equity curve is one
honest out-of-sample track record. Rolling windows slide the in-sample window
forward by the out-of-sample length; anchored ones keep its start at bar 0.

Intraday data: a trial's Backtest names its range in session dates (`data.start`,
`data.end`), so a window cut inside a session would hand the in-sample trials the rest
of that day, out-of-sample bars included (the boundary day was in both halves). Every
cut is therefore moved to the nearest session start (`snap_to_sessions`): each window
holds whole sessions, about the bars asked for, and no bar is in two windows. For daily
data a session is one bar and nothing moves.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubetrader.errors import SpecError


@dataclass(frozen=True)
class Window:
    index: int
    in_start: int
    in_end: int  # exclusive
    out_start: int
    out_end: int  # exclusive


def walk_forward_windows(n_bars: int, in_sample: int, out_of_sample: int, *, anchored: bool = False) -> list[Window]:
    """The windows over `n_bars` bars. The last out-of-sample window may be shorter
    than `out_of_sample` (it ends at the data's end) but never shorter than a fifth of it."""
    if in_sample + out_of_sample > n_bars:
        raise SpecError(
            "validation.walkForward",
            f"inSample ({in_sample}) + outOfSample ({out_of_sample}) exceed the {n_bars} bars of data",
        )
    windows: list[Window] = []
    out_start = in_sample
    while out_start < n_bars:
        out_end = min(out_start + out_of_sample, n_bars)
        if windows and out_end - out_start < max(1, out_of_sample // 5):
            break
        in_start = 0 if anchored else out_start - in_sample
        windows.append(Window(len(windows), in_start, out_start, out_start, out_end))
        out_start = out_end
    return windows


def snap_to_sessions(windows: Sequence[Window], session_starts: Sequence[int], n_bars: int) -> list[Window]:
    """`windows` with every cut moved to the nearest session start (`session_starts`: the
    sorted bar indices where a session begins, 0 first). Windows left with no in-sample or
    no out-of-sample bars are dropped; the rest keep following one another without gaps."""
    starts = list(session_starts)

    def snap(bar: int) -> int:
        if bar >= n_bars:
            return n_bars
        at = bisect.bisect_left(starts, bar)
        candidates = [starts[i] for i in (at - 1, at) if 0 <= i < len(starts)]
        return min(candidates, key=lambda s: (abs(s - bar), -s))

    snapped: list[Window] = []
    for w in windows:
        out_start = snapped[-1].out_end if snapped else snap(w.out_start)
        out_end = snap(w.out_end)
        in_start = snap(w.in_start)
        if out_end <= out_start or out_start <= in_start:
            continue
        snapped.append(Window(len(snapped), in_start, out_start, out_start, out_end))
    if not snapped:
        raise SpecError("validation.walkForward", "no window holds a whole session in and out of sample")
    return snapped


def session_starts(days: Sequence[Any]) -> list[int]:
    """Bar indices where a new session (calendar date of the bar) begins."""
    return [i for i, day in enumerate(days) if i == 0 or day != days[i - 1]]
