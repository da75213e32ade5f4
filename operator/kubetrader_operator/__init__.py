"""The kubetrader operator: kopf handlers, pure manifest builders, and one module of Kubernetes API I/O."""
