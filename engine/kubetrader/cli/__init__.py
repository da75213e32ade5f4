"""The `kubetrader` command line: one entry point, one subcommand module per capability."""
