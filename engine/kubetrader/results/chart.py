"""The result's chart as SVG: equity against the benchmark, drawdown, rolling Sharpe and volatility.

Why not matplotlib: a Backtest Job draws one chart and exits, and matplotlib's import alone cost
more CPU (0.6 s) than a whole plain Backtrader script of the same backtest (profile in
bench/RESULTS.md, "cli"); drawing the PNG cost another 0.3-0.9 s. Nor pygal (0.14 s import plus
about 0.1 s per panel) or Plotly (3.5 MB of JavaScript per file to open offline). The chart is
always the same three panels of lines over dates, so it is written directly as SVG: a few
milliseconds, vector (sharp at any zoom), opens in any browser and in MLflow's artifact view, and
is embedded as is in the tearsheet.

Pure functions from the stored series (a result document's lists) to SVG text; no pandas.
Series longer than the plot is wide are thinned to each pixel column's first, lowest, highest
and last point, which draws the same picture as every point.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

WIDTH, HEIGHT = 1000, 750
LEFT, RIGHT, TOP, BOTTOM = 80, 72, 34, 28
GAP = 10  # between panels
BLUE, GREY, RED, ORANGE, INK, GRID = "#1f5fa8", "#999999", "#c0392b", "#e67e22", "#222222", "#dddddd"


@dataclass(frozen=True)
class Line:
    """One series on a panel; `values` aligned with the chart's dates, None where there is no value."""

    values: Sequence[float | None]
    colour: str
    width: float = 1.0
    label: str = ""
    fill: bool = False  # filled down (or up) to zero, as for a drawdown
    right_axis: bool = False


@dataclass(frozen=True)
class Panel:
    lines: list[Line]
    label: str
    weight: float = 1.0  # share of the height
    right_label: str = ""
    zero_line: bool = False
    percent: bool = False
    legend: bool = False


@dataclass
class _Axis:
    low: float
    high: float
    ticks: list[float] = field(default_factory=list)


def nice_ticks(low: float, high: float, count: int = 5) -> _Axis:
    """An axis covering [low, high] whose ticks fall on 1, 2, 2.5 or 5 times a power of ten."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return _Axis(0.0, 1.0, [0.0, 1.0])
    if high - low < 1e-12 * max(abs(low), abs(high), 1.0):
        pad = abs(high) * 0.05 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    last = math.ceil(high / step) * step
    ticks = [first + i * step for i in range(round((last - first) / step) + 1)]
    return _Axis(first, last, ticks)


def _tick_text(value: float, *, percent: bool) -> str:
    if percent:
        return f"{value:g}%"
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:g}" if abs(value) >= 1 or value == 0 else f"{value:.2g}"


def _date_ticks(days: Sequence[int]) -> list[tuple[int, str]]:
    """Year starts (every n-th year so that at most ~12 show), or month starts on a short span."""
    first, last = days[0], days[-1]
    start, end = dt.date.fromordinal(first), dt.date.fromordinal(last)
    years = end.year - start.year
    if years >= 2:
        every = max(1, math.ceil(years / 12))
        return [
            (dt.date(year, 1, 1).toordinal(), str(year))
            for year in range(start.year + 1, end.year + 1)
            if year % every == 0
        ]
    ticks = []
    month = dt.date(start.year, start.month, 1)
    span_months = years * 12 + end.month - start.month
    every = max(1, math.ceil(span_months / 10))
    while month <= end:
        if month.toordinal() >= first and (month.month - 1) % every == 0:
            ticks.append((month.toordinal(), month.strftime("%b %Y")))
        month = dt.date(month.year + (month.month == 12), month.month % 12 + 1, 1)
    return ticks


def thin(xs: Sequence[float], ys: Sequence[float | None], columns: int) -> list[tuple[float, float]]:
    """The (x, y) points to draw: all of them when they fit, else each pixel column's first, lowest,
    highest and last, in order (the drawn line is the same). None values are gaps (dropped)."""
    points = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None and math.isfinite(y)]
    if len(points) <= 4 * columns or not points:
        return points
    span = (points[-1][0] - points[0][0]) or 1.0
    kept: list[tuple[float, float]] = []
    bucket: list[tuple[float, float]] = []
    current = 0
    for point in points:
        column = int((point[0] - points[0][0]) / span * (columns - 1))
        if column != current and bucket:
            kept.extend(_extremes(bucket))
            bucket = []
        current = column
        bucket.append(point)
    kept.extend(_extremes(bucket))
    return kept


def _extremes(bucket: list[tuple[float, float]]) -> list[tuple[float, float]]:
    low = min(bucket, key=lambda p: p[1])
    high = max(bucket, key=lambda p: p[1])
    chosen = {id(p): p for p in (bucket[0], low, high, bucket[-1])}
    return sorted(chosen.values(), key=lambda p: p[0])


def _runs(values: Sequence[float | None]) -> list[tuple[int, int]]:
    """(start, stop) index ranges of consecutive finite values: a line is broken where data is missing."""
    runs, start = [], None
    for i, value in enumerate(values):
        finite = value is not None and math.isfinite(value)
        if finite and start is None:
            start = i
        elif not finite and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(values)))
    return runs


def _range(lines: Sequence[Line]) -> tuple[float, float]:
    values = [v for line in lines for v in line.values if v is not None and math.isfinite(v)]
    if any(line.fill for line in lines):
        values.append(0.0)
    return (min(values), max(values)) if values else (0.0, 1.0)


def render(dates: Sequence[str], panels: Sequence[Panel], *, title: str = "") -> str:
    """The SVG document of `panels` stacked over one date axis (`dates` as ISO strings)."""
    days = [dt.date.fromisoformat(d[:10]).toordinal() for d in dates]
    plot_width = WIDTH - LEFT - RIGHT
    total_weight = sum(p.weight for p in panels) or 1.0
    usable = HEIGHT - TOP - BOTTOM - GAP * (len(panels) - 1)
    first, last = (days[0], days[-1]) if days else (0, 1)
    span = (last - first) or 1

    def x_of(day: float) -> float:
        return LEFT + (day - first) / span * plot_width

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        'font-family="Helvetica,Arial,sans-serif" font-size="11" role="img">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
    ]
    if title:
        out.append(
            f'<text x="{LEFT + plot_width / 2:.1f}" y="20" text-anchor="middle" font-size="13" fill="{INK}">'
            f"{html.escape(title)}</text>"
        )
    date_ticks = _date_ticks(days) if days else []
    top = float(TOP)
    for number, panel in enumerate(panels):
        height = usable * panel.weight / total_weight
        bottom = top + height
        out.extend(_panel(panel, days, x_of, top, bottom, plot_width, date_ticks))
        if number == len(panels) - 1:
            for day, text in date_ticks:
                out.append(
                    f'<text x="{x_of(day):.1f}" y="{bottom + 16:.1f}" text-anchor="middle" fill="{INK}">{text}</text>'
                )
        top = bottom + GAP
    out.append("</svg>")
    return "\n".join(out)


def _panel(
    panel: Panel,
    days: Sequence[int],
    x_of: Callable[[float], float],
    top: float,
    bottom: float,
    plot_width: float,
    date_ticks: list[tuple[int, str]],
) -> list[str]:
    parts: list[str] = []
    axes = {
        side: nice_ticks(*_range(lines))
        for side, lines in (
            (False, [line for line in panel.lines if not line.right_axis]),
            (True, [line for line in panel.lines if line.right_axis]),
        )
        if lines
    }

    def y_of(value: float, axis: _Axis) -> float:
        return bottom - (value - axis.low) / ((axis.high - axis.low) or 1.0) * (bottom - top)

    right_edge = LEFT + plot_width
    parts.append(f'<g stroke="{GRID}" stroke-width="0.7">')
    for day, _ in date_ticks:
        parts.append(f'<line x1="{x_of(day):.1f}" y1="{top:.1f}" x2="{x_of(day):.1f}" y2="{bottom:.1f}"/>')
    left_axis = axes.get(False)
    if left_axis is not None:
        for tick in left_axis.ticks:
            y = y_of(tick, left_axis)
            parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{right_edge:.1f}" y2="{y:.1f}"/>')
    parts.append("</g>")
    for right, axis in axes.items():
        x, anchor = (right_edge + 5, "start") if right else (LEFT - 5, "end")
        colour = next((line.colour for line in panel.lines if line.right_axis), INK) if right else INK
        for tick in axis.ticks:
            parts.append(
                f'<text x="{x:.1f}" y="{y_of(tick, axis) + 4:.1f}" text-anchor="{anchor}" fill="{colour}">'
                f"{_tick_text(tick, percent=panel.percent)}</text>"
            )
        label = panel.right_label if right else panel.label
        lx = WIDTH - 14 if right else 16
        parts.append(
            f'<text transform="translate({lx},{(top + bottom) / 2:.1f}) rotate(-90)" text-anchor="middle" '
            f'fill="{colour}">{html.escape(label)}</text>'
        )
    if panel.zero_line and left_axis is not None and left_axis.low < 0 < left_axis.high:
        y = y_of(0.0, left_axis)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{right_edge:.1f}" y2="{y:.1f}" stroke="{GREY}"/>')
    xs = [float(d) for d in days]
    for line in panel.lines:
        axis = axes[line.right_axis]
        for start, stop in _runs(line.values):
            points = thin(xs[start:stop], line.values[start:stop], int(plot_width))
            if not points:
                continue
            path = " ".join(f"{x_of(x):.1f},{y_of(y, axis):.1f}" for x, y in points)
            if line.fill:
                base = y_of(0.0, axis)
                path = f"{x_of(points[0][0]):.1f},{base:.1f} {path} {x_of(points[-1][0]):.1f},{base:.1f}"
                parts.append(f'<polygon points="{path}" fill="{line.colour}" fill-opacity="0.5" stroke="none"/>')
            else:
                parts.append(
                    f'<polyline points="{path}" fill="none" stroke="{line.colour}" '
                    f'stroke-width="{line.width}" stroke-linejoin="round"/>'
                )
    parts.append(
        f'<rect x="{LEFT}" y="{top:.1f}" width="{plot_width:.1f}" height="{bottom - top:.1f}" '
        f'fill="none" stroke="{INK}" stroke-width="0.8"/>'
    )
    if panel.legend:
        y = top + 16
        for line in panel.lines:
            if not line.label:
                continue
            parts.append(
                f'<line x1="{LEFT + 10}" y1="{y - 4:.1f}" x2="{LEFT + 30}" y2="{y - 4:.1f}" '
                f'stroke="{line.colour}" stroke-width="2"/>'
                f'<text x="{LEFT + 36}" y="{y:.1f}" fill="{INK}">{html.escape(line.label)}</text>'
            )
            y += 15
    return parts


def drawdown(equity: Sequence[float]) -> list[float]:
    """Distance below the running peak, as a fraction (0 at a new high)."""
    out, peak = [], -math.inf
    for value in equity:
        peak = max(peak, value)
        out.append(value / peak - 1.0 if peak > 0 else 0.0)
    return out


def growth(start: float, returns: Sequence[float]) -> list[float]:
    """`start` compounded by `returns` (the first return is the first day's, normally 0)."""
    out, value = [], start
    for r in returns:
        value *= 1.0 + r
        out.append(value)
    return out
