"""The kubetrader dashboard: a FastAPI backend and the Streamlit app that reads it."""
