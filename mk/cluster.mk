# Cluster flow: a kind cluster with the whole platform, then an end-to-end check.
#   make kind-up images kind-load install e2e      (needs docker, kind, kubectl, helm)
# Image names come from images/images.env (included by the Makefile), the cluster from
# kind-config.yaml, the release's values from charts/kubetrader/ci/default-values.yaml.

KIND_CLUSTER ?= kubetrader
KIND_CONFIG ?= kind-config.yaml
NAMESPACE ?= kubetrader
RELEASE ?= kubetrader
CHART ?= charts/kubetrader
HELM_VALUES ?= $(CHART)/ci/default-values.yaml
# The scenario's phases on kind (uninstall last: `make install` again afterwards).
E2E_KIND_PHASES ?= backtest,study,dashboard,upgrade,uninstall
KUBECTL := kubectl --context kind-$(KIND_CLUSTER)

# $(call need,tool,why): stop with a clear message when a tool is missing.
define need
	@command -v $(1) >/dev/null 2>&1 || { echo "error: '$(1)' is not on PATH; $(2)" >&2; exit 127; }
endef
define need-docker
	$(call need,docker,install Docker: https://docs.docker.com/get-docker/)
	@docker info >/dev/null 2>&1 || { echo "error: the Docker daemon is not reachable (docker info failed); start Docker" >&2; exit 1; }
endef
define need-cluster
	$(call need,kubectl,install kubectl: https://kubernetes.io/docs/tasks/tools/)
	@$(KUBECTL) version >/dev/null 2>&1 || { echo "error: no kind cluster '$(KIND_CLUSTER)' (context kind-$(KIND_CLUSTER)); run 'make kind-up' first" >&2; exit 1; }
endef

kind-up:  ## create the kind cluster (1 control plane, 2 workers, NodePorts 30080/30800/30500 on localhost)
	$(need-docker)
	$(call need,kind,install kind >= v0.29.0: https://kind.sigs.k8s.io/docs/user/quick-start/#installation)
	$(call need,kubectl,install kubectl: https://kubernetes.io/docs/tasks/tools/)
	@if kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
	  echo "kind cluster '$(KIND_CLUSTER)' already exists"; \
	else \
	  kind create cluster --name $(KIND_CLUSTER) --config $(KIND_CONFIG) --wait 120s; \
	fi
	$(KUBECTL) get nodes -o wide

kind-down:  ## delete the kind cluster
	$(call need,kind,install kind >= v0.29.0: https://kind.sigs.k8s.io/docs/user/quick-start/#installation)
	kind delete cluster --name $(KIND_CLUSTER)

images:  ## docker build the engine, operator and dashboard images (names and tag: images/images.env)
	$(need-docker)
	docker build -f images/engine.Dockerfile -t $(ENGINE_IMAGE) .
	docker build -f images/operator.Dockerfile -t $(OPERATOR_IMAGE) .
	docker build -f images/dashboard.Dockerfile -t $(DASHBOARD_IMAGE) .

kind-load:  ## load the three images into the kind nodes (no registry needed)
	$(need-docker)
	$(call need,kind,install kind >= v0.29.0: https://kind.sigs.k8s.io/docs/user/quick-start/#installation)
	@for image in $(ENGINE_IMAGE) $(OPERATOR_IMAGE) $(DASHBOARD_IMAGE); do \
	  docker image inspect $$image >/dev/null 2>&1 || { echo "error: image $$image not built; run 'make images' first" >&2; exit 1; }; \
	done
	kind load docker-image --name $(KIND_CLUSTER) $(ENGINE_IMAGE) $(OPERATOR_IMAGE) $(DASHBOARD_IMAGE)

install:  ## helm upgrade --install the chart (CRDs included) with the kind values
	$(need-cluster)
	$(call need,helm,install Helm >= 3.14: https://helm.sh/docs/intro/install/)
	helm upgrade --install $(RELEASE) $(CHART) --kube-context kind-$(KIND_CLUSTER) \
	  --namespace $(NAMESPACE) --create-namespace -f $(HELM_VALUES) --wait --timeout 10m
	$(KUBECTL) -n $(NAMESPACE) get pods

uninstall:  ## remove the release (CRDs, generated Secrets and PVCs are kept, as Helm does)
	$(need-cluster)
	$(call need,helm,install Helm >= 3.14: https://helm.sh/docs/intro/install/)
	helm uninstall $(RELEASE) --kube-context kind-$(KIND_CLUSTER) --namespace $(NAMESPACE) --wait

e2e:  ## the README's cluster flow on kind (tests/e2e/scenario.py, the same file as e2e-sandbox)
	$(need-cluster)
	@$(MAKE) --no-print-directory $(STAMP)  # after the tool check: a missing kubectl is said first
	$(PYTHON) -m tests.e2e.scenario --kubeconfig $${KUBECONFIG:-$$HOME/.kube/config} --context kind-$(KIND_CLUSTER) \
	  --namespace $(NAMESPACE) --values $(HELM_VALUES) --access nodeport --phases $(E2E_KIND_PHASES)
	@echo "e2e passed"
