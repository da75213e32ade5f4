"""OptimizationStudy: a driver Job runs the study; the shared worker pool runs its trials.

`builders` (pure manifests), `status` (pure status from the Job, its pods and the
progress the driver publishes to Redis), `kube_io` and `redis_io` (the I/O),
`handlers` (thin kopf handlers).
"""
