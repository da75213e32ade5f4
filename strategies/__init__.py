"""Strategies: `BaseStrategy` (risk controls) and the examples. User strategies go here too.

Resources refer to a strategy by import path, e.g. `strategies.sma_crossover.SMACrossover`;
only modules under the allowed prefixes (default `strategies.`) can be loaded.
"""
