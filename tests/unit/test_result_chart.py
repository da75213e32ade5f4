"""The result's SVG chart (kubetrader.results.chart): well-formed, the three panels, the right
values where they belong, and thinning that keeps a long series' extremes."""

from __future__ import annotations

import datetime as dt
import math
import xml.etree.ElementTree as ET

from kubetrader.results import chart

SVG = "{http://www.w3.org/2000/svg}"


def _dates(n: int, start: dt.date = dt.date(2005, 1, 3)) -> list[str]:
    return [(start + dt.timedelta(days=i)).isoformat() for i in range(n)]


def test_nice_ticks_cover_the_range_on_round_steps() -> None:
    axis = chart.nice_ticks(83_210.0, 361_977.0)
    assert axis.low <= 83_210.0 and axis.high >= 361_977.0
    steps = {round(b - a, 6) for a, b in zip(axis.ticks, axis.ticks[1:], strict=False)}
    assert steps == {100_000.0}
    flat = chart.nice_ticks(5.0, 5.0)  # a constant series still gets an axis around it
    assert flat.low < 5.0 < flat.high


def test_thin_keeps_every_point_that_fits_and_the_extremes_of_those_that_do_not() -> None:
    xs = [float(i) for i in range(10_000)]
    ys: list[float | None] = [math.sin(i / 50) + (5.0 if i == 7_777 else 0.0) for i in range(10_000)]
    assert chart.thin(xs[:100], ys[:100], 900) == list(zip(xs[:100], ys[:100], strict=True))
    kept = chart.thin(xs, ys, 900)
    assert len(kept) <= 4 * 900
    assert (7_777.0, ys[7_777]) in kept  # the spike survives
    assert min(y for _, y in kept) == min(y for y in ys if y is not None)
    assert [x for x, _ in kept] == sorted(x for x, _ in kept)


def test_drawdown_and_growth_match_their_definitions() -> None:
    assert chart.drawdown([100.0, 120.0, 90.0, 130.0]) == [0.0, 0.0, 90.0 / 120.0 - 1.0, 0.0]
    assert chart.growth(100.0, [0.0, 0.1, -0.5]) == [100.0, 110.00000000000001, 55.00000000000001]


def test_render_is_well_formed_svg_with_a_line_per_series_and_year_labels() -> None:
    n = 1_200
    dates = _dates(n)
    equity = [100_000.0 * (1 + 0.0004 * i) for i in range(n)]
    rolling: list[float | None] = [None] * 126 + [0.5] * (n - 126)  # a warm-up gap, then values
    panels = [
        chart.Panel([chart.Line(equity, chart.BLUE, label="strategy")], "equity", weight=3, legend=True),
        chart.Panel([chart.Line([-1.0] * n, chart.RED, fill=True)], "drawdown %", percent=True),
        chart.Panel(
            [chart.Line(rolling, chart.BLUE), chart.Line(rolling, chart.ORANGE, right_axis=True)],
            "Sharpe",
            right_label="volatility %",
        ),
    ]
    root = ET.fromstring(chart.render(dates, panels, title="sma & co <test>"))
    assert root.tag == f"{SVG}svg"
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "sma & co <test>" in texts  # escaped in the file, the title as given once parsed
    assert {"2006", "2007", "2008"} <= set(texts)
    assert {"strategy", "equity", "drawdown %", "volatility %"} <= set(texts)
    polylines = list(root.iter(f"{SVG}polyline"))
    assert len(polylines) == 3  # equity, Sharpe, volatility; the drawdown is a filled polygon
    assert len(list(root.iter(f"{SVG}polygon"))) == 1
    sharpe_points = polylines[1].attrib["points"].split()
    assert len(sharpe_points) == n - 126  # the warm-up is a gap, not zeros
