"""Walk-forward windows: optimise in sample, test the winner on the next unseen stretch.

Windows are in bars (trading days for daily data). Out-of-sample windows follow one
another without overlap and without gaps, so their stitched equity curve is one
honest out-of-sample track record. Rolling windows slide the in-sample window
forward by the out-of-sample length; anchored ones keep its start at bar 0.
"""

from __future__ import annotations

from dataclasses import dataclass

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
