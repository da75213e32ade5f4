"""The REST API under /api/v1: `python -m kubetrader_dashboard.api` serves it with uvicorn."""
