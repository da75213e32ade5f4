"""The Streamlit dashboard: `streamlit run dashboard/kubetrader_dashboard/ui/app.py`.

Ten tabs over the REST API (FASTAPI_BACKEND_URL). The UI holds no store access of
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
    try:
        for tab, (label, render) in zip(st.tabs([label for label, _ in TABS]), TABS, strict=True):
            with tab:
                try:
                    render(client)
                except ApiError as exc:
                    st.error(f"{label}: API error {exc}")
    finally:
        client.close()


main()
