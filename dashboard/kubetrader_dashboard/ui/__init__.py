"""The Streamlit app (`streamlit run dashboard/kubetrader_dashboard/ui/app.py`); it reads only the API."""
