# End to end without Docker: `helm install` of the chart on the emulated API, every workload
# run by the node agent (tests/kube/node), then the README's cluster section
# (tests/e2e/scenario.py, the same file `make e2e` runs on kind): a Backtest, a matrix and a study
# over the scaled workers, examples/live-paper.yaml against the TWS peer (flat at the gateway after
# `kubectl delete livedeployment`, NetworkPolicies evaluated against the running pods), the
# dashboard, API and MLflow, `helm upgrade`, `helm uninstall`. Prints each phase's time; about
# 7 min on 2 busy cores (install ~2 min), so the hard limit leaves CI's 30 min for `make test` too.
#   make e2e-sandbox                      (root: one network namespace per pod)
#   make e2e-sandbox E2E_PHASES=backtest  (some phases only)
E2E_PHASES ?= backtest,study,live,dashboard,upgrade,uninstall
E2E_SANDBOX_TIMEOUT ?= 900

.PHONY: e2e-sandbox

e2e-sandbox: $(STAMP)  ## helm install on the emulated API + node agent, then the README's cluster flow (no Docker)
	@command -v ip >/dev/null 2>&1 || { echo "installing iproute2 with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null; }
	@[ "$$(id -u)" = 0 ] || { echo "error: e2e-sandbox needs root (network namespaces, bind mounts)" >&2; exit 1; }
	timeout --signal=TERM --kill-after=60 $(E2E_SANDBOX_TIMEOUT) $(PYTHON) -m tests.e2e.sandbox --phases $(E2E_PHASES)
