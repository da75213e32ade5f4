"""Every image the platform runs is pinned by digest or is one of ours, built from this repository
(#21 supply chain: "base and third-party images pinned by digest in the chart and Dockerfiles").

A tag is mutable: whoever controls the repository (or a mirror in between) decides what a tag
means tomorrow, and the gateway image receives IB credentials. A digest names the content. The
images gathered here: each Dockerfile's FROM lines (ARG defaults expanded), `COPY --from=<image>`
and any `# syntax=` frontend; every container and init container of the chart's default render,
of every ci/ scenario and of an OIDC render (oauth2-proxy); the gateway images the chart allows
and the operator's default one. Ours are the three names of images/images.env.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tests.fixtures.chart import (
    CHART_DIR,
    PINNED_AUTH_PROXY,
    ROOT,
    chart_scenarios,
    parse_manifests,
    render_chart,
    scenario_values,
)

DOCKERFILES = sorted((ROOT / "images").glob("*.Dockerfile"))
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
OIDC = {
    "auth": {
        "oidc": {
            "enabled": True,
            "issuerUrl": "https://issuer.example.com",
            "clientId": "kubetrader",
            "existingSecret": "oidc",
        }
    },
    "authProxy": {"image": PINNED_AUTH_PROXY},
}


def ours() -> set[str]:
    """The kubetrader images' names (images/images.env with its $(VAR) references expanded)."""
    values: dict[str, str] = {}
    for line in (ROOT / "images" / "images.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            name, value = line.split("=", 1)
            values[name.strip()] = re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], value.strip())
    return {values[name] for name in ("ENGINE_IMAGE", "OPERATOR_IMAGE", "DASHBOARD_IMAGE")}


def dockerfile_images(path: Path) -> list[str]:
    """The images a build of this Dockerfile pulls (stage names are not images)."""
    text = path.read_text()
    pulled = [m.group(1) for m in re.finditer(r"^#\s*syntax\s*=\s*(\S+)", text, re.MULTILINE)]
    parser = DockerfileParser(path=str(path))
    defaults: dict[str, str] = {}
    stages: set[str] = set()
    for instruction in parser.structure:
        value = instruction["value"]
        if instruction["instruction"] == "ARG" and "=" in value and not stages:  # global ARGs, before any FROM
            name, default = value.split("=", 1)
            defaults[name.strip()] = default.strip()
        elif instruction["instruction"] == "FROM":
            words = value.split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: defaults[m.group(1)], words[0])
            if image not in stages:
                pulled.append(image)
            if len(words) == 3 and words[1].upper() == "AS":
                stages.add(words[2])
        elif instruction["instruction"] == "COPY":
            source = re.search(r"--from=(\S+)", value)
            if source and source.group(1) not in stages and not source.group(1).isdigit():
                pulled.append(source.group(1))
    return pulled


def _containers(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for doc in documents:
        spec = doc.get("spec") or {}
        if doc["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        pod = doc.get("spec") if doc["kind"] == "Pod" else (spec.get("template") or {}).get("spec")
        if pod:
            found.extend([*pod.get("initContainers", []), *pod.get("containers", [])])
    return found


def chart_images() -> dict[str, str]:
    """image -> where it appears first (a render, or a value)."""
    from kubetrader_operator.live.settings import DEFAULT_GATEWAY_IMAGE

    renders = {"default": {}, "auth.oidc": OIDC, **{f"ci/{s}": scenario_values(s) for s in chart_scenarios()}}
    found: dict[str, str] = {}
    for where, values in renders.items():
        for container in _containers(parse_manifests(render_chart(values))):
            found.setdefault(str(container["image"]), f"{where}: container {container['name']}")
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    for image in defaults["live"]["gateway"]["allowedImages"]:
        found.setdefault(image, "values.yaml live.gateway.allowedImages")
    found.setdefault(DEFAULT_GATEWAY_IMAGE, "kubetrader_operator.live.settings.DEFAULT_GATEWAY_IMAGE")
    return found


def every_image() -> dict[str, str]:
    found = {image: f"images/{path.name}" for path in DOCKERFILES for image in dockerfile_images(path)}
    for image, where in chart_images().items():
        found.setdefault(image, where)
    return found


IMAGES = every_image()


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_every_image_is_pinned_by_digest_or_built_here(image: str) -> None:
    assert DIGEST.search(image) or image in ours(), f"{image} ({IMAGES[image]}) is pulled by tag: pin it by digest"


def test_the_gathering_sees_every_kind_of_image() -> None:
    """A collector that found nothing would pass everything: it must see the base, the data stores,
    ours, the proxy and the gateway."""
    names = {re.split(r"[:@]", image.rsplit("/", 1)[-1])[0] for image in IMAGES}
    assert {"python", "redis", "postgres", "engine", "operator", "dashboard", "oauth2-proxy", "ib-gateway"} <= names


@pytest.mark.parametrize(
    ("image", "refusal"),
    [
        ("", "authProxy.image is required with auth.oidc.enabled"),
        ("quay.io/oauth2-proxy/oauth2-proxy:v7.12.0", "authProxy.image"),  # a tag: the schema's pattern
        ("quay.io/oauth2-proxy/oauth2-proxy@sha256:abc", "authProxy.image"),  # not a whole digest
    ],
)
def test_oidc_refuses_an_auth_proxy_that_is_not_pinned_by_digest(image: str, refusal: str) -> None:
    """No digest of oauth2-proxy could be verified here (quay.io; docker-library/repo-info records
    only official Docker Hub images), so the chart ships none and refuses a tag: the proxy that
    sees every session is never pulled by a name that can move."""
    import helm_python

    with pytest.raises((helm_python.HelmRenderError, helm_python.HelmValuesError), match=refusal):
        render_chart({**OIDC, "authProxy": {"image": image}})


def test_the_three_dockerfiles_share_one_pinned_base() -> None:
    bases = {path.name: dockerfile_images(path) for path in DOCKERFILES}
    assert len(DOCKERFILES) == 3 and len({tuple(b) for b in bases.values()}) == 1, bases


def test_an_unpinned_base_or_frontend_is_seen(tmp_path: Path) -> None:
    dockerfile = tmp_path / "x.Dockerfile"
    dockerfile.write_text(
        "# syntax=docker/dockerfile:1\nARG BASE=python:3.11-slim\nFROM ${BASE} AS builder\nFROM builder\n"
        "COPY --from=busybox:1 /bin/sh /sh\n"
    )
    assert dockerfile_images(dockerfile) == ["docker/dockerfile:1", "python:3.11-slim", "busybox:1"]
