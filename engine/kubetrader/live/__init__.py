"""Live trading: the broker layer, the journal, the risk gate and the live runner.

Modules by capability: `broker` (the interface and its value types), `ib_broker`
(IB over ib_insync), `simulated` (fills against replayed bars), `connection`
(retries, health checks, reconnects), `journal` (every intent, order and fill in SQL),
`session` (the pieces wired together; its `submit` is the risk gate, with the engine of
`kubetrader.risk` that backtests use too), `runner` (Backtrader on live bars, behind
ports that speak only in order intents), `http` (the runner's small authenticated
endpoint) and `stop` (graceful and emergency stops). Nothing here imports Kubernetes.
"""
