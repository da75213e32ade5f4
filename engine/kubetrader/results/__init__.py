"""Backtest results: the versioned JSON document, the result store and the reports."""
