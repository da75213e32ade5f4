# The dashboard on this machine: the REST API, then the Streamlit app that reads only the API.
.PHONY: dashboard-api dashboard-ui

dashboard-api: $(STAMP)  ## the REST API on 127.0.0.1:8000 (docs at /api/v1/docs)
	$(PYTHON) -m kubetrader_dashboard.api --host 127.0.0.1 --port 8000

dashboard-ui: $(STAMP)  ## the Streamlit dashboard on 127.0.0.1:8501 (reads FASTAPI_BACKEND_URL)
	FASTAPI_BACKEND_URL=$${FASTAPI_BACKEND_URL:-http://127.0.0.1:8000} \
	  $(BIN)/streamlit run dashboard/kubetrader_dashboard/ui/app.py --server.address 127.0.0.1 --server.headless true
