"""The Backtest kind: manifest builders, status logic and kopf handlers."""
