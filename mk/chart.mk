# The chart's README: its values table comes from values.yaml's `# --` comments (helm-docs' format).

chart-docs: $(STAMP)  ## regenerate charts/kubetrader/README.md from values.yaml's comments
	$(PYTHON) charts/values_docs.py

.PHONY: chart-docs
