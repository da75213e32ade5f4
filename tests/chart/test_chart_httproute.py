"""The chart's HTTPRoutes are valid Gateway API objects: checked against the HTTPRoute schema.

The schema below is hand-written from the Gateway API's own CRD, version v1 of
`httproutes.gateway.networking.k8s.io` in config/crd/standard/gateway.networking.k8s.io_httproutes.yaml
of kubernetes-sigs/gateway-api at tag v1.6.1 (commit 8bb74df00e56ec8f944d48c25e6c1c9c2f6848e3):
the fields the chart uses, with the CRD's types, bounds and patterns, and the CRD's CEL rules on a
PathPrefix/Exact path value written as patterns (must start with '/', no '//', '/./', '/../',
'%2f', '#', no trailing '/.' or '/..', only the characters its rule lists). Strict: a field not
listed fails here, where the API server would prune it or refuse it under strict field validation;
a field the chart starts using is added after checking the CRD. (The CRD itself is not vendored.)
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest

from tests.fixtures.chart import RenderedChart, parse_manifests, render_chart

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
GROUP = {"type": "string", "maxLength": 253, "pattern": r"^$|" + DNS_SUBDOMAIN}
KIND = {"type": "string", "minLength": 1, "maxLength": 63, "pattern": r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"}
NAME = {"type": "string", "minLength": 1, "maxLength": 253}
NAMESPACE = {"type": "string", "minLength": 1, "maxLength": 63, "pattern": DNS_LABEL}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

PARENT_REF = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "group": GROUP,
        "kind": KIND,
        "name": NAME,
        "namespace": NAMESPACE,
        "port": PORT,
        "sectionName": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": DNS_SUBDOMAIN},
    },
}
# The CRD's x-kubernetes-validations on HTTPPathMatch, for type Exact and PathPrefix.
ABSOLUTE_PATH = {
    "type": "string",
    "maxLength": 1024,
    "allOf": [
        {"pattern": r"^/"},
        {"pattern": r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$"},
        {"not": {"pattern": r"//|/\./|/\.\./|%2f|%2F|#"}},
        {"not": {"pattern": r"/\.\.?$"}},
    ],
}
PATH_MATCH = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]}, "value": {"type": "string"}},
    "if": {"properties": {"type": {"enum": ["Exact", "PathPrefix"]}}},
    "then": {"properties": {"value": ABSOLUTE_PATH}},
}
BACKEND_REF = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "group": GROUP,
        "kind": KIND,
        "name": NAME,
        "namespace": NAMESPACE,
        "port": PORT,
        "weight": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
    },
    # "Must have port for Service reference" (kind defaults to Service, group to "")
    "if": {"not": {"required": ["kind"]}},
    "then": {"required": ["port"]},
}
RULE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matches": {
            "type": "array",
            "maxItems": 64,
            "items": {"type": "object", "additionalProperties": False, "properties": {"path": PATH_MATCH}},
        },
        "backendRefs": {"type": "array", "maxItems": 16, "items": BACKEND_REF},
    },
}
HTTP_ROUTE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "gateway.networking.k8s.io/v1"},
        "kind": {"const": "HTTPRoute"},
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN},
                "namespace": {"type": "string"},
                "labels": STRING_MAP,
                "annotations": STRING_MAP,
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "parentRefs": {"type": "array", "maxItems": 32, "items": PARENT_REF},
                "hostnames": {
                    "type": "array",
                    "maxItems": 16,
                    "items": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 253,
                        "pattern": r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                    },
                },
                "rules": {"type": "array", "minItems": 1, "maxItems": 16, "items": RULE},
            },
        },
    },
}

ROUTED = {
    component: {
        "httpRoute": {
            "enabled": True,
            "annotations": {"team": "quant"},
            "parentRefs": [{"name": "public", "namespace": "gateway", "sectionName": "https"}],
            "hostnames": [f"{component}.example.com", "*.trading.example.com"],
        }
    }
    for component in ("api", "dashboard", "mlflow")
}


@pytest.fixture(scope="module")
def routed() -> RenderedChart:
    templates = render_chart(ROUTED)
    return RenderedChart("httpRoute", ROUTED, templates, parse_manifests(templates))


@pytest.mark.parametrize("component", sorted(ROUTED))
def test_every_web_components_httproute_validates_against_the_gateway_api_schema(
    routed: RenderedChart, component: str
) -> None:
    route = routed.get("HTTPRoute", f"kubetrader-{component}")
    jsonschema.validate(route, HTTP_ROUTE)
    (backend,) = route["spec"]["rules"][0]["backendRefs"]
    service = routed.get("Service", backend["name"])  # the route points at the component's own Service port
    assert backend["port"] in {p["port"] for p in service["spec"]["ports"]}


def _route(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "parentRefs": [{"name": "public"}],
        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}], "backendRefs": [{"name": "x"}]}],
    }
    base["rules"][0]["backendRefs"][0]["port"] = 8000
    base.update(spec)
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r"}, "spec": base}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r["spec"]["rules"][0]["matches"][0]["path"].update(value="api"), "'api'"),
        (lambda r: r["spec"]["rules"][0]["matches"][0]["path"].update(value="/api//v1"), "/api//v1"),
        (lambda r: r["spec"]["rules"][0]["backendRefs"][0].pop("port"), "'port' is a required property"),
        (lambda r: r["spec"].update(hostnames=["10.0.0.1:80"]), "10.0.0.1:80"),
        (lambda r: r["spec"]["parentRefs"][0].update(sectionname="https"), "sectionname"),
    ],
    ids=["relative path", "double slash", "service without port", "host with port", "misspelt field"],
)
def test_the_schema_refuses_what_the_gateway_api_refuses(change: Any, field: str) -> None:
    route = _route()
    jsonschema.validate(route, HTTP_ROUTE)
    change(route)
    with pytest.raises(jsonschema.ValidationError, match=re.escape(field)):
        jsonschema.validate(route, HTTP_ROUTE)


@pytest.mark.parametrize(
    ("route", "field"),
    [({"hostnames": ["API.example.com:443"]}, "hostnames"), ({"path": "/api v1"}, "path")],
    ids=["hostname with port", "path with a space"],
)
def test_the_values_schema_refuses_what_the_httproute_crd_would(route: dict[str, Any], field: str) -> None:
    """Refused at `helm install` naming the value, rather than by the API server mid-install."""
    import helm_python

    values = {"api": {"httpRoute": {"enabled": True, "parentRefs": [{"name": "public"}], **route}}}
    with pytest.raises(helm_python.HelmValuesError, match=f"/api/httpRoute/{field}"):
        render_chart(values)
