"""Tests of the kopf operator and the CRDs. Imported as `tests.operator`, never as a top-level `operator`."""
# ruff: noqa: A005  # the folder name is the brief's; the package path `tests.operator` shadows nothing
