"""The queue's defaults that light modules need (the CLI's option defaults, `queue.local`), without Redis."""

DEFAULT_PREFIX = "kubetrader"
DEFAULT_HANDLER = "kubetrader.queue.handlers:dispatch"
