"""Tests of the kopf operator and the CRDs. Imported as `tests.operator`, never as a top-level `operator`."""
# the folder name is the brief's; the package path `tests.operator` shadows nothing
