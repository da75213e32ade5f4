"""Dockerfiles (parsed with dockerfile-parse) and the cluster make targets (mk/cluster.mk).

No Docker engine or cluster here: the Dockerfiles are checked for what can go wrong without
building them, and each make target must stop with a clear message when a tool is missing.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from tests.chart.test_chart_wiring import images_env
from tests.fixtures.chart import ROOT

DOCKERFILES = {name: ROOT / "images" / f"{name}.Dockerfile" for name in ("engine", "operator", "dashboard")}
UID = 10001


def _instructions(path: Path) -> list[dict[str, str]]:
    return list(DockerfileParser(path=str(path)).structure)


def _final_stage(path: Path) -> list[dict[str, str]]:
    instructions = _instructions(path)
    last_from = max(i for i, ins in enumerate(instructions) if ins["instruction"] == "FROM")
    return instructions[last_from:]


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_image_runs_as_a_fixed_numeric_non_root_user(image: str) -> None:
    users = [ins["value"] for ins in _final_stage(DOCKERFILES[image]) if ins["instruction"] == "USER"]
    assert users, f"{image}: no USER in the final stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) == UID, users[-1]
    assert gid == "" or (gid.isdigit() and int(gid) == UID)
    creates = " ".join(ins["value"] for ins in _final_stage(DOCKERFILES[image]) if ins["instruction"] == "RUN")
    assert f"--uid {UID}" in creates


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_image_is_multi_stage_on_slim_python_311_without_build_tools_in_the_final_stage(image: str) -> None:
    path = DOCKERFILES[image]
    parser = DockerfileParser(path=str(path))
    froms = [ins["value"] for ins in parser.structure if ins["instruction"] == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS builder"), froms
    global_args = [ins["value"] for ins in parser.structure if ins["instruction"] == "ARG"]
    assert any(arg.startswith("PYTHON_IMAGE=python:3.11-slim") for arg in global_args), global_args
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms), froms
    final = _final_stage(path)
    runs = " ".join(ins["value"] for ins in final if ins["instruction"] == "RUN")
    for tool in ("apt-get install", "gcc", "build-essential", "pip install"):
        assert tool not in runs, f"{image}: {tool} in the final stage"
    copies = [ins["value"] for ins in final if ins["instruction"] == "COPY"]
    assert "--from=builder /opt/venv /opt/venv" in copies
    builder_runs = " ".join(ins["value"] for ins in _instructions(path)[: len(_instructions(path)) - len(final)])
    # Supply chain (#21): every dependency archive checked against the hash in the runtime lock,
    # and the project built with the hashed hatchling from it (nothing fetched unhashed).
    assert "pip install --require-hashes --no-deps -r requirements/runtime.txt" in builder_runs
    assert "pip install --no-deps --no-build-isolation ." in builder_runs


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_every_copy_source_exists_in_the_repository(image: str) -> None:
    copies = [ins["value"] for ins in _instructions(DOCKERFILES[image]) if ins["instruction"] == "COPY"]
    checked = 0
    for value in copies:
        words = shlex.split(value)
        if any(w.startswith("--from=") for w in words):
            continue
        sources = [w for w in words if not w.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), f"{image}: COPY {source} does not exist"
            checked += 1
    assert checked >= 5


def test_dockerignore_lets_every_copy_source_through() -> None:
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert "*" in rules, ".dockerignore starts from nothing"
    for path in DOCKERFILES.values():
        for ins in _instructions(path):
            if ins["instruction"] != "COPY" or "--from=" in ins["value"]:
                continue
            for source in shlex.split(ins["value"])[:-1]:
                assert any(source.rstrip("/") == a or source.startswith(a + "/") for a in allowed), source


def _entrypoint(image: str) -> list[str]:
    import json

    final = _final_stage(DOCKERFILES[image])
    found = [json.loads(ins["value"]) for ins in final if ins["instruction"] in ("ENTRYPOINT", "CMD")]
    return [word for words in found for word in words]


def test_engine_entry_point_is_the_kubetrader_console_script() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert _entrypoint("engine")[0] == "kubetrader"
    module, _, attr = project["project"]["scripts"]["kubetrader"].partition(":")
    assert module == "kubetrader.cli.main"
    assert (ROOT / "engine" / "kubetrader" / "cli" / "main.py").is_file()
    import importlib

    assert callable(getattr(importlib.import_module(module), attr))


def test_operator_entry_point_is_the_operator_package_main() -> None:
    assert _entrypoint("operator") == ["python", "-m", "kubetrader_operator"]
    assert (ROOT / "operator" / "kubetrader_operator" / "__main__.py").is_file()


def test_dashboard_entry_points_exist() -> None:
    assert _entrypoint("dashboard")[:3] == ["python", "-m", "kubetrader_dashboard.api"]
    assert (ROOT / "dashboard" / "kubetrader_dashboard" / "api" / "__main__.py").is_file()
    env = DockerfileParser(path=str(DOCKERFILES["dashboard"])).envs
    app = env["KUBETRADER_UI_APP"].removeprefix("/opt/venv/lib/python3.11/site-packages/")
    assert (ROOT / "dashboard" / app).is_file()


def test_engine_image_carries_the_bundled_sample_data() -> None:
    parser = DockerfileParser(path=str(DOCKERFILES["engine"]))
    assert "COPY examples/data /opt/kubetrader/data" in [
        f"COPY {ins['value']}" for ins in _final_stage(DOCKERFILES["engine"]) if ins["instruction"] == "COPY"
    ]
    assert parser.envs["KUBETRADER_BUNDLED_DATA"] == "/opt/kubetrader/data"
    assert parser.envs["KUBETRADER_DATA_DIR"] == "/data"
    assert any((ROOT / "examples" / "data").glob("orcl-*.txt"))


def _make(*args: str, path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path}
    return subprocess.run(
        ["/usr/bin/make", "--no-print-directory", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_make_images_builds_the_three_images_named_in_images_env() -> None:
    result = _make("-n", "images", path=os.environ["PATH"])
    assert result.returncode == 0, result.stderr
    env = images_env()
    for name in ("engine", "operator", "dashboard"):
        image = env[f"{name.upper()}_IMAGE"]
        assert f"docker build -f images/{name}.Dockerfile -t {image} ." in result.stdout


@pytest.mark.parametrize(
    ("target", "tool"),
    [
        ("kind-up", "docker"),
        ("images", "docker"),
        ("kind-load", "docker"),
        ("install", "kubectl"),
        ("uninstall", "kubectl"),
        ("e2e", "kubectl"),
    ],
)
def test_cluster_targets_stop_with_a_clear_message_when_a_tool_is_missing(
    target: str, tool: str, tmp_path: Path
) -> None:
    result = _make(target, path=str(tmp_path))  # an empty PATH: no tool at all
    assert result.returncode != 0
    assert f"error: '{tool}' is not on PATH" in result.stderr
    assert "install" in result.stderr.split(f"'{tool}' is not on PATH", 1)[1]


def test_install_uses_helm_upgrade_install_with_the_kind_values() -> None:
    text = (ROOT / "mk" / "cluster.mk").read_text()
    assert "helm upgrade --install $(RELEASE) $(CHART)" in text
    assert (ROOT / "charts" / "kubetrader" / "ci" / "default-values.yaml").is_file()
    # `make e2e` runs the scenario `make e2e-sandbox` runs (tests/e2e/scenario.py), so they cannot drift.
    assert "$(PYTHON) -m tests.e2e.scenario" in text
    assert "tests.e2e.scenario" not in (ROOT / "mk" / "e2e-sandbox.mk").read_text()  # it goes through sandbox.py
    assert "scenario.run(" in (ROOT / "tests" / "e2e" / "sandbox.py").read_text()
    assert (ROOT / "examples" / "e2e" / "study-small.yaml").is_file()
