"""The node agent runs each kubetrader image as its Dockerfile declares it, and derives a
container's argv and environment as the kubelet does."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.kube.node import podspec
from tests.kube.node.images import ImagePullError, dockerfile_final_stage, known_images, repository, resolve

IMAGES_DIR = Path(__file__).resolve().parents[3] / "images"


def test_each_kubetrader_image_runs_its_dockerfiles_entrypoint_and_cmd() -> None:
    images = {name: image for name, image in known_images().items() if image.dockerfile}
    assert {image.dockerfile for image in images.values()} == {p.name for p in IMAGES_DIR.glob("*.Dockerfile")}
    engine = resolve("ghcr.io/kubetrader/engine:0.1.0", known_images())
    assert (engine.entrypoint, engine.cmd, engine.user) == (("kubetrader",), ("--help",), 10001)
    operator = resolve("ghcr.io/kubetrader/operator:0.1.0", known_images())
    assert (operator.entrypoint, operator.cmd) == (("python", "-m", "kubetrader_operator"), ())
    dashboard = resolve("ghcr.io/kubetrader/dashboard:0.1.0", known_images())
    assert dashboard.entrypoint == ()
    assert dashboard.cmd == ("python", "-m", "kubetrader_dashboard.api", "--host", "0.0.0.0", "--port", "8000")
    for name, image in images.items():
        declared = dockerfile_final_stage(IMAGES_DIR / str(image.dockerfile))
        assert f"{image.user}:{image.user}" == declared["USER"], name


def test_every_program_an_image_runs_exists_on_its_path() -> None:
    for name, image in known_images().items():
        program = [*image.entrypoint, *image.cmd][0]
        dirs = [Path(d) for d in image.path.split(":")]
        assert any((d / program).exists() for d in dirs), f"{name}: {program} not on {image.path}"


def test_image_names_resolve_by_repository_and_unknown_ones_fail_to_pull() -> None:
    assert repository("ghcr.io/kubetrader/engine:0.1.0") == "ghcr.io/kubetrader/engine"
    assert repository("redis:7.4.2-bookworm") == "redis"
    assert repository("docker.io/library/postgres:16@sha256:abc") == "postgres"
    assert repository("localhost:5000/x/y") == "localhost:5000/x/y"
    with pytest.raises(ImagePullError, match="gnzsnz/ib-gateway"):
        resolve("gnzsnz/ib-gateway:stable", known_images())


def test_dashboard_app_path_inside_the_image_maps_to_the_installed_package() -> None:
    image = resolve("ghcr.io/kubetrader/dashboard:0.1.0", known_images())
    local = image.local_word("/opt/venv/lib/python3.11/site-packages/kubetrader_dashboard/ui/app.py")
    assert Path(local).is_file()


def test_env_follows_the_kubelet_order_and_expansion() -> None:
    secret = {"data": {"password": base64.b64encode(b"s3cret").decode()}}
    config = {"data": {"level": "INFO"}}
    objects = {("Secret", "ns", "db"): secret, ("ConfigMap", "ns", "cfg"): config}
    pod = {"metadata": {"name": "p-1", "namespace": "ns", "uid": "u", "labels": {"app": "x"}}, "spec": {}}
    container = {
        "name": "c",
        "env": [
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            {"name": "URL", "value": "pg://u:$(PASSWORD)@h/$(MISSING)/$$(PASSWORD)"},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "level"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}}},
        ],
    }
    env = podspec.container_env(container, pod, lambda kind, ns, name: objects.get((kind, ns, name)))
    assert env == {
        "PASSWORD": "s3cret",
        "URL": "pg://u:s3cret@h/$(MISSING)/$(PASSWORD)",
        "LEVEL": "INFO",
        "POD": "p-1",
        "APP": "x",
    }
    missing = {"name": "c", "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "tok", "key": "token"}}}]}
    with pytest.raises(podspec.ContainerConfigError, match='secret "tok" not found'):
        podspec.container_env(missing, pod, lambda *_: None)
    assert podspec.argv({"args": ["--x=$(POD)"]}, env, ["kubetrader"], ["--help"]) == ["kubetrader", "--x=p-1"]
    assert podspec.argv({}, env, ["kubetrader"], ["--help"]) == ["kubetrader", "--help"]
    assert podspec.argv({"command": ["sh"]}, env, ["kubetrader"], ["--help"]) == ["sh"]
