# The operator's RBAC: re-record the API requests the operator makes in the scenario tests, which
# tests/kube/test_chart_rbac_replay.py replays against the chart's Roles (tests/kube/README.md).
.PHONY: record-rbac

RBAC_RECORDING := tests/kube/operator_requests.json

record-rbac: $(STAMP)  ## re-record the operator's API requests for the chart RBAC replay test
	rm -f $(RBAC_RECORDING)
	KUBETRADER_RECORD_OPERATOR_REQUESTS=$(CURDIR)/$(RBAC_RECORDING) $(PYTHON) -m pytest -n 2 -q -p no:cacheprovider \
	  tests/operator tests/operator_study tests/operator_live tests/queue/test_scaler_operator.py \
	  tests/kubectl/test_readme_flows.py
