"""Who is calling, and what they may do: roles, passwords, sessions, OIDC tokens and rate limits.

Kept apart from the API's routes so the API (which checks) and the command that writes a users
file (`python -m kubetrader_dashboard.auth`) share one definition of each.
"""
