"""kubetrader: research, optimize and run Backtrader strategies, locally or on Kubernetes.

Importing the package is cheap on purpose: heavy libraries (Backtrader, pandas,
MLflow, Optuna) are imported by the modules that use them, because every Job and
worker pays the start-up cost on each run.
"""

__version__ = "0.1.0"
