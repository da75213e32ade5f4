"""Test-wide set-up.

Every module in tests/fixtures/ (not starting with `_`) is a pytest plugin, so each area
adds its servers and fixtures in a file of its own.

xdist groups: tests marked `xdist_group(name)` share an expensive server (the MLflow
server on PostgreSQL, the dashboard's API) and must run on one worker. xdist honours
groups only with `--dist loadgroup` (which `make test` passes; plain `-n 2` is switched
to it below), and xdist 3.8 tags a test with its group by setting `item._nodeid`, which
pytest 9 no longer reads (ids live in `item._id`): so the tagging is done here.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if not path.stem.startswith("_")
)

_LOADGROUP = "kubetrader_loadgroup"


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        if workerinput.get(_LOADGROUP):
            config.option.loadgroup = True
        return
    given = [*config.invocation_params.args, *shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))]
    explicit = any(arg == "-d" or arg.startswith("--dist") for arg in given)
    if getattr(config.option, "dist", None) == "load" and not explicit:
        config.option.dist = "loadgroup"


@pytest.hookimpl(trylast=True)  # after xdist's own tagging, which pytest 9 ignores
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        if "@" in item.nodeid:  # tagged already (xdist with a pytest that reads `_nodeid`)
            continue
        groups = {
            str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")
        }
        if groups:
            tagged = f"{item.nodeid}@{'_'.join(sorted(groups))}"
            if hasattr(item, "_id"):  # pytest 9: a structured id, parsed from its string form
                from _pytest.nodeid import NodeId

                item._id = NodeId.parse(tagged)
            else:
                setattr(item, "_nodeid", tagged)  # noqa: B010 (absent from the stubs of pytest 9)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: what a worker is told at start-up."""
    node.workerinput[_LOADGROUP] = node.config.getoption("dist") == "loadgroup"
