"""Scaling the worker Deployment on queue depth: a pure rule, a kopf timer, an optional KEDA object.

Import `kubetrader_operator.scaling.handlers` in the operator to run the timer.
"""
