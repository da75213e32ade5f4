"""The Optimization tab's robustness view: is the best point a plateau or a spike?

One self-contained piece of the tab (`robustness_view`), drawn from the API's
`/studies/{name}/robustness` (the engine's kubetrader.optimize.robustness numbers): the
plateau score, the objective one step away from the best point in each parameter, a
heatmap of two parameters, and the top trials.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from kubetrader.optimize.robustness import Heatmap
from kubetrader_dashboard.ui.client import ApiClient, ApiError


def heatmap_figure(grid: Heatmap) -> go.Figure:
    fig = go.Figure(go.Heatmap(x=[str(v) for v in grid.x], y=[str(v) for v in grid.y], z=grid.z, colorscale="Viridis"))
    fig.update_layout(
        title="Mean objective by parameter pair (blank: not evaluated)",
        xaxis_title=grid.x_param,
        yaxis_title=grid.y_param,
        height=360,
    )
    return fig


def robustness_view(client: ApiClient, name: str) -> None:
    st.markdown("**Robustness**")
    try:
        view = client.study_robustness(name)
    except ApiError as exc:
        st.caption(f"Robustness not available: {exc}")
        return
    score = "n/a" if view.plateau_score is None else f"{view.plateau_score:.2f}"
    st.metric("Plateau score", score, help="1: the neighbours are as good as the best point; 0: a spike.")
    if view.neighbours:
        rows: list[dict[str, Any]] = [
            {
                "Parameter": n.param,
                "Step": n.side,
                "Value": str(n.value_of_param),
                "Objective": n.objective,
                "Drop": n.drop,
            }
            for n in view.neighbours
        ]
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="study-neighbours")
    if view.heatmap is not None:
        st.plotly_chart(heatmap_figure(view.heatmap), key="study-heatmap")
    if view.top:
        top = [{"Trial": p.number, "Value": p.value, **p.params} for p in view.top]
        st.dataframe(pd.DataFrame(top), hide_index=True, key="study-top")
