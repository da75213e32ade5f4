"""The Streamlit dashboard: `streamlit run dashboard/kubetrader_dashboard/ui/app.py`.

Eleven pages over the REST API (FASTAPI_BACKEND_URL). The UI holds no store access and no
credential of its own: every call carries the signed-in user's (`ui/signin.py`), so what it shows
and what it may submit is exactly what the API allows that user.
"""

from __future__ import annotations

import streamlit as st

from kubetrader_dashboard.settings import Settings
from kubetrader_dashboard.ui import signin
from kubetrader_dashboard.ui.client import ApiClient, ApiError
from kubetrader_dashboard.ui.tabs import TABS


def main() -> None:
    st.set_page_config(page_title="kubetrader", layout="wide")
    # Read per run, not cached: the environment is the configuration, and tests change it.
    settings = Settings()
    token = signin.credential()
    # Not closed at the end of the run: its connections are the app's (see ui/client.py), and a
    # page's live fragment keeps calling through it after this run ends.
    client = ApiClient(settings.fastapi_backend_url, token=token)
    st.title("kubetrader")
    try:
        identity = signin.signed_in_identity(client, token) if token else None
        if identity is None:
            signin.sign_in_form(client, expired=token is not None)
            return
        signin.identity_bar(identity)
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
            if exc.status == 401:  # the session ended (expired, user removed): sign in again
                signin.sign_out()
                st.rerun()
            st.error(f"{label}: API error {exc}")
    except ApiError as exc:
        st.error(f"API error {exc}")


main()
