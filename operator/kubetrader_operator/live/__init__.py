"""LiveDeployment: an IB Gateway, a strategy runner, and an emergency stop on delete.

`builders` (spec -> manifests, pure), `status` (runner snapshot -> status, promotion
gate; pure), `stopping` (the stop sequence: runner first, gateway directly second),
`kube_io` (the one module talking to the Kubernetes API), `handlers` (kopf, thin).
"""
