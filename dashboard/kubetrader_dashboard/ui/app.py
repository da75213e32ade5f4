"""The Streamlit dashboard: `streamlit run dashboard/kubetrader_dashboard/ui/app.py`.

Eleven pages over the REST API (FASTAPI_BACKEND_URL). The UI holds no store access of
its own, so what it shows is exactly what the API serves to any other client.
"""

from __future__ import annotations

import streamlit as st

from kubetrader_dashboard.settings import Settings
from kubetrader_dashboard.ui.client import ApiClient, ApiError
from kubetrader_dashboard.ui.tabs import TABS


def main() -> None:
    st.set_page_config(page_title="kubetrader", layout="wide")
    # Read per run, not cached: the environment is the configuration, and tests change it.
    settings = Settings()
    client = ApiClient(settings.fastapi_backend_url, token=settings.api_token.get_secret_value())
    st.title("kubetrader")
    labels = [label for label, _ in TABS]
    # One page at a time: st.tabs would run every tab's code (and its API calls) on each rerun;
    # a radio runs only the page shown. Its choice lives in the URL (?page=...) to be linkable.
    wanted = st.query_params.get("page")
    index = labels.index(wanted) if wanted in labels else 0
    label = st.radio("Page", labels, index=index, horizontal=True, key="page", label_visibility="collapsed")
    st.query_params["page"] = label
    render = dict(TABS)[label]
    try:
        render(client)
    except ApiError as exc:
        st.error(f"{label}: API error {exc}")
    finally:
        client.close()


main()
