"""Signing in to the dashboard: whose credential the API calls of this browser session carry.

The Streamlit server calls the API on the user's behalf, so it must carry the *user's*
credential, never one of its own (the dashboard's pod has no token at all):
- behind the auth proxy (oauth2-proxy with `--pass-authorization-header`), the user's OIDC ID
  token arrives as `Authorization: Bearer ...` on the request that opened the session (Streamlit's
  `st.context.headers`: "headers sent in the initial request"); it is passed on as it is and the
  API verifies it against the issuer's keys;
- otherwise the built-in login: a user name and password for a session token from the API
  (`POST /api/v1/auth/login`), kept in this browser session's state only.
"""

from __future__ import annotations

import streamlit as st

from kubetrader_dashboard.auth.roles import Identity
from kubetrader_dashboard.ui.client import ApiClient, ApiError

SESSION_KEY = "kubetrader_session"
IDENTITY_KEY = "kubetrader_identity"


def proxy_credential() -> str | None:
    """The ID token the auth proxy put on the request that opened this session, if any."""
    try:
        header = st.context.headers.get("Authorization") or ""
    except (AttributeError, RuntimeError):  # no request context (a bare script run)
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def credential() -> str | None:
    return proxy_credential() or st.session_state.get(SESSION_KEY)


def signed_in_identity(client: ApiClient, token: str) -> Identity | None:
    """Who the API takes `token` for (asked once per session and credential); None when it refuses it."""
    cached = st.session_state.get(IDENTITY_KEY)
    if isinstance(cached, tuple) and cached[0] == token:
        identity: Identity = cached[1]
        return identity
    try:
        identity = client.me()
    except ApiError as exc:
        if exc.status in (401, 403):
            sign_out()
            return None
        raise
    st.session_state[IDENTITY_KEY] = (token, identity)
    return identity


def sign_out() -> None:
    for key in (SESSION_KEY, IDENTITY_KEY):
        st.session_state.pop(key, None)


def sign_in_form(client: ApiClient, *, expired: bool = False) -> None:
    """The built-in login's form; on success the session token goes into the session state."""
    st.subheader("Sign in")
    if expired:
        st.info("Your session ended or was refused: sign in again (behind the sign-in proxy: reload the page).")
    with st.form("sign-in"):
        username = st.text_input("User name", key="signin-user")
        password = st.text_input("Password", type="password", key="signin-password")
        sent = st.form_submit_button("Sign in")
    st.caption("Local `make dashboard`: it printed the admin's password (kept in data/dashboard/admin-password).")
    if not sent:
        return
    try:
        session = client.login(username, password)
    except ApiError as exc:
        if exc.status == 404:
            st.warning("This dashboard has no built-in login: open it through your organisation's sign-in (OIDC).")
        else:
            st.warning(f"Not signed in ({exc.status} {exc.title}): {exc.detail or ''}".strip())
        return
    st.session_state[SESSION_KEY] = session.token
    st.session_state[IDENTITY_KEY] = (session.token, session.identity)
    st.rerun()


def identity_bar(identity: Identity) -> None:
    """Who is signed in, above the pages (not in a sidebar: one would narrow every page)."""
    left, right = st.columns([8, 1])
    left.caption(f"Signed in as **{identity.name}** ({identity.role})")
    if identity.method == "session" and right.button("Sign out", key="sign-out"):
        sign_out()
        st.rerun()
