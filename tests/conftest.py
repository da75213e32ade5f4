"""Test-wide set-up. Every module in tests/fixtures/ (not starting with `_`) is a pytest
plugin, so each area adds its servers and fixtures in a file of its own."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if not path.stem.startswith("_")
)
