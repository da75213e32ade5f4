"""Keep the MLflow server tests on one xdist worker even when `--dist` is not given.

The server tests share one PostgreSQL and one `mlflow server` per worker (`xdist_group`
"mlflow-server"), but xdist honours groups only with `--dist loadgroup`, which `make test`
passes. `pytest -n 2 tests/tracking` alone would spread them over both workers, and each
would start its own server. Groups change nothing for tests without one.

Three parts: the controller schedules by group (`dist`); each worker tags its test ids with
their group (`loadgroup`, which a worker derives from its own command line, so the controller
passes it along in `workerinput`); and the tagging itself. xdist 3.8 tags by setting
`item._nodeid`, which pytest 9 no longer reads (ids live in `item._id`), so with pytest 9 no
group was ever kept together, not even under `make test`'s `--dist loadgroup`. Every
conftest hook sees the whole session's items, so this also keeps the dashboard's group
together whenever tests/tracking is collected; it belongs in tests/conftest.py.
"""

from __future__ import annotations

import os
import shlex
from typing import Any

import pytest

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
