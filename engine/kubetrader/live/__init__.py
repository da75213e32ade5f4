"""Live trading: the broker layer, the journal, pre-trade risk and the live runner.

Modules by capability: `broker` (the interface and its value types), `ib_broker`
(IB over ib_insync), `simulated` (fills against replayed bars), `connection`
(retries, health checks, reconnects), `journal` (every intent, order and fill in SQL),
`risk` (pure pre-trade checks), `session` (the pieces wired together), `runner`
(Backtrader on live bars), `http` (the runner's small authenticated endpoint) and
`stop` (graceful and emergency stops). Nothing here imports Kubernetes.
"""
