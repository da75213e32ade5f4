"""A whole custom resource (apiVersion, kind, metadata, spec) as read from a YAML file."""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kubetrader.specs.common import GROUP_VERSION, SpecModel

# kind -> (module under kubetrader.specs, model class): a file of one kind builds that kind's models only.
KINDS: dict[str, tuple[str, str]] = {
    "Backtest": ("backtest", "BacktestSpec"),
    "OptimizationStudy": ("study", "OptimizationStudySpec"),
    "LiveDeployment": ("live", "LiveDeploymentSpec"),
}


def kind_model(kind: str) -> type[SpecModel]:
    """The spec model of a kind (imported on first use); KeyError for an unknown kind."""
    module, name = KINDS[kind]
    model: type[SpecModel] = getattr(importlib.import_module(f"kubetrader.specs.{module}"), name)
    return model


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=63)
    namespace: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    uid: str | None = Field(default=None, pattern=r"^[0-9a-fA-F-]{8,64}$", description="Set by the API server.")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Resource(BaseModel):
    """A parsed custom resource; `spec` is the validated model of its kind."""

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: Metadata
    spec: SpecModel


def parse_resource(document: dict[str, Any]) -> Resource:
    """Validate a custom-resource document; errors name the field (`spec.data.end: ...`).

    Raises `ValueError` for a wrong apiVersion or kind and pydantic's
    `ValidationError` for a bad spec.
    """
    if not isinstance(document, dict):
        raise ValueError("a resource must be a mapping with apiVersion, kind, metadata and spec")
    api_version = document.get("apiVersion")
    if api_version != GROUP_VERSION:
        raise ValueError(f"apiVersion: expected {GROUP_VERSION!r}, got {api_version!r}")
    kind = document.get("kind")
    if str(kind) not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    model = kind_model(str(kind))
    if "spec" not in document:
        raise ValueError("spec: field required")
    spec = model.model_validate(document["spec"])
    return Resource.model_validate(
        {"apiVersion": api_version, "kind": kind, "metadata": document.get("metadata") or {}, "spec": spec}
    )
