"""Base model and names shared by every kind."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, WrapValidator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

API_GROUP = "kubetrader.io"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"

SYMBOL_PATTERN = r"^[A-Z0-9][A-Z0-9._-]{0,31}$"
IMPORT_PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"


def _one_scalar(value: Any, handler: Callable[[Any], Any]) -> Any:
    """One error at the parameter's own name, not one per member of the union (`...fast.bool`, `...fast.int`)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("finite_number", "must be a finite number, not {value}", {"value": str(value)})
    if not isinstance(value, bool | int | float | str):
        kind = "null" if value is None else type(value).__name__
        raise PydanticCustomError("scalar_type", "must be a boolean, number or string, not {kind}", {"kind": kind})
    return handler(value)


# A strategy parameter value. The JSON schema (and so the CRD) stays the plain union.
Scalar = Annotated[bool | int | float | str, WrapValidator(_one_scalar)]


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

    `allow_inf_nan=False` is the one place every float field of every kind gets
    its finiteness check, before its bounds: `cash: .inf` once ran and failed as
    "cannot convert float NaN to integer", and `marketBps: .nan` was reported as
    "less than or equal to 1000" (NaN fails every comparison). The CRD schemas
    need no rule for it: JSON has no infinity or NaN, so `kubectl` cannot send
    one (it refuses to encode YAML's `.inf`); the API's JSON parser and YAML files
    can, and they meet this check.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        validate_default=True,
        allow_inf_nan=False,
        defer_build=True,
    )

    def to_wire(self) -> dict[str, object]:
        """The camelCase JSON form, as stored in a custom resource."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
