# The dashboard on this machine: the REST API, then the Streamlit app that reads only the API.
# With nothing configured both read what `make demo` / `kubetrader ...` wrote here
# (./results, data/mlflow.db, data/optuna/*.log; kubetrader.defaults).
.PHONY: dashboard dashboard-api dashboard-ui

DASHBOARD_API_PORT ?= 8000
DASHBOARD_UI_PORT ?= 8501
# No Deploy button or developer menu, no usage statistics (the chart's pod passes the same flags).
STREAMLIT_FLAGS := --server.address 127.0.0.1 --server.port $(DASHBOARD_UI_PORT) --server.headless true \
  --browser.gatherUsageStats false --client.toolbarMode viewer
# With no users file configured, the API creates the local admin (user `admin`, role trader) and keeps
# its random password here; `make dashboard` prints it.
ADMIN_PASSWORD_FILE = $${KUBETRADER_DATA_DIR:-data}/dashboard/admin-password
# $(call wait_http,URL): poll until URL answers 200 (60 s at most).
wait_http = for i in $$(seq 120); do $(PYTHON) -c "import httpx,sys; httpx.get(sys.argv[1]).raise_for_status()" $(1) \
  >/dev/null 2>&1 && break; sleep 0.5; done

dashboard: $(STAMP)  ## the API and the dashboard on 127.0.0.1, prints the URL; Ctrl-C stops both
	@trap 'kill $$api $$ui 2>/dev/null' EXIT; trap 'exit 130' INT TERM; \
	$(PYTHON) -m kubetrader_dashboard.api --host 127.0.0.1 --port $(DASHBOARD_API_PORT) & api=$$!; \
	$(call wait_http,http://127.0.0.1:$(DASHBOARD_API_PORT)/api/v1/healthz); \
	FASTAPI_BACKEND_URL=$${FASTAPI_BACKEND_URL:-http://127.0.0.1:$(DASHBOARD_API_PORT)} \
	  $(BIN)/streamlit run dashboard/kubetrader_dashboard/ui/app.py $(STREAMLIT_FLAGS) >/dev/null & ui=$$!; \
	$(call wait_http,http://127.0.0.1:$(DASHBOARD_UI_PORT)/_stcore/health); \
	echo ""; \
	echo "  Dashboard:  http://127.0.0.1:$(DASHBOARD_UI_PORT)"; \
	echo "  API docs:   http://127.0.0.1:$(DASHBOARD_API_PORT)/api/v1/docs"; \
	if [ -z "$${KUBETRADER_USERS_FILE:-}" ] && [ -f "$(ADMIN_PASSWORD_FILE)" ]; then \
	  echo "  Sign in:    user admin, password $$(cat "$(ADMIN_PASSWORD_FILE)")  (kept in $(ADMIN_PASSWORD_FILE))"; fi; \
	echo "  (Ctrl-C stops both)"; echo ""; \
	wait $$api $$ui

dashboard-api: $(STAMP)  ## the REST API alone on 127.0.0.1:8000 (docs at /api/v1/docs)
	$(PYTHON) -m kubetrader_dashboard.api --host 127.0.0.1 --port $(DASHBOARD_API_PORT)

dashboard-ui: $(STAMP)  ## the Streamlit dashboard alone on 127.0.0.1:8501 (reads FASTAPI_BACKEND_URL)
	FASTAPI_BACKEND_URL=$${FASTAPI_BACKEND_URL:-http://127.0.0.1:$(DASHBOARD_API_PORT)} \
	  $(BIN)/streamlit run dashboard/kubetrader_dashboard/ui/app.py $(STREAMLIT_FLAGS)
