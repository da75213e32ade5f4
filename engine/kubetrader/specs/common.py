"""Base model and names shared by every kind."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

API_GROUP = "kubetrader.io"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"

SYMBOL_PATTERN = r"^[A-Z0-9][A-Z0-9._-]{0,31}$"
IMPORT_PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"
Scalar = bool | int | float | str


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close.

    A choice that starts with what was typed wins over a merely similar one, so
    `sharpe` suggests `sharpe_ratio` rather than `bull_sharpe`.
    """
    import difflib

    options = list(choices)
    prefixed = [c for c in options if c.startswith(name)]
    close = prefixed[:1] or difflib.get_close_matches(name, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class SpecModel(BaseModel):
    """Kubernetes-style model: camelCase on the wire, snake_case in Python.

    `extra="forbid"` turns a typo in a YAML file into an error that names the
    field, instead of a silently ignored setting (which, with real money, is the
    worst kind of bug). Models are frozen: a spec is a value, not a state.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    def to_wire(self) -> dict[str, object]:
        """The camelCase JSON form, as stored in a custom resource."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
