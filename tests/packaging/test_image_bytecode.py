"""The engine image ships valid bytecode for everything a Job imports (issue #20, cold start).

A Backtest Job runs the engine image as uid 10001 on a read-only root filesystem, so no `.pyc`
can be written at run time: a module without valid precompiled bytecode in the image is compiled
again by every Job. Checked statically on images/engine.Dockerfile (dockerfile-parse, no build):

- the builder stage compiles the whole venv after the last `pip install`, forced (pip's own
  timestamp `.pyc` would otherwise be kept, `compileall` skips files whose timestamp header
  matches) and hash-based, so the bytecode stays valid whatever the image tooling does to file
  mtimes (a timestamp `.pyc` is stale once the source's mtime changes;
  https://docs.python.org/3.11/reference/import.html#cached-bytecode-invalidation);
- the final stage compiles the base image's standard library the same way, as root before
  USER: the official python images ship it without bytecode
  (https://github.com/docker-library/python/issues/615);
- the final stage sets PYTHONDONTWRITEBYTECODE=1, so no process tries to write a cache there.

The measured effect is bench/bench_image.py's (no timed assertion here).
"""

from __future__ import annotations

import re
from pathlib import Path

from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "images" / "engine.Dockerfile"
HASH_MODES = {"checked-hash", "unchecked-hash"}
# The base image's standard library wherever it is (/usr/local/lib/python3.11 in python:3.11-slim,
# /usr/lib/python3.11 in Debian's python3), as the image's own Python reports it.
STDLIB = """$(python -c 'print(__import__("sysconfig").get_path("stdlib"))')"""


def _stages(path: Path) -> list[list[dict[str, str]]]:
    """The instructions of each build stage, in order (a stage starts at its FROM)."""
    stages: list[list[dict[str, str]]] = []
    for instruction in DockerfileParser(path=str(path)).structure:
        if instruction["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _commands(stage: list[dict[str, str]]) -> list[tuple[int, str]]:
    """(instruction index, shell command) for every `&&`/`;`-separated command of the stage's RUNs."""
    return [
        (index, command.strip())
        for index, instruction in enumerate(stage)
        if instruction["instruction"] == "RUN"
        for command in re.split(r"&&|;", instruction["value"])
        if command.strip()
    ]


def _compileall(command: str) -> dict[str, object] | None:
    """The options and targets of a `python -m compileall` command, None for any other command.

    Targets are the words after the options (a command substitution such as STDLIB is one target).
    """
    words = command.split()
    if "compileall" not in words or words[words.index("compileall") - 1] != "-m":
        return None
    rest = words[words.index("compileall") + 1 :]
    options: list[str] = []
    while rest and rest[0].startswith("-"):
        options.append(rest.pop(0))
        if options[-1] in {"--invalidation-mode", "-x", "-j", "-d", "-s", "-p", "-r", "-o", "-e"} and rest:
            options.append(rest.pop(0))
    mode = options[options.index("--invalidation-mode") + 1] if "--invalidation-mode" in options else "timestamp"
    return {"mode": mode, "force": "-f" in options, "targets": [" ".join(rest)] if "$(" in " ".join(rest) else rest}


def test_builder_stage_compiles_the_whole_venv_with_hash_based_bytecode_after_the_last_install() -> None:
    builder = _stages(ENGINE)[0]
    commands = _commands(builder)
    installs = [position for position, (_, command) in enumerate(commands) if "pip install" in command]
    assert installs, "no pip install in the builder stage"
    compiles = [
        (position, found)
        for position, (_, command) in enumerate(commands)
        if (found := _compileall(command)) is not None
    ]
    venv = [(position, found) for position, found in compiles if "/opt/venv" in found["targets"]]
    assert venv, f"the builder stage does not compile /opt/venv as a whole: {compiles}"
    position, found = venv[-1]
    assert position > max(installs), "the venv is compiled before the last pip install"
    assert found["mode"] in HASH_MODES, f"timestamp bytecode goes stale when mtimes change: {found}"
    assert found["force"], "without -f compileall keeps pip's timestamp .pyc files"


def test_final_stage_compiles_the_base_images_standard_library_as_root() -> None:
    final = _stages(ENGINE)[-1]
    user_at = max(i for i, instruction in enumerate(final) if instruction["instruction"] == "USER")
    stdlib = [
        (index, found)
        for index, command in _commands(final)
        if (found := _compileall(command)) is not None and STDLIB in found["targets"]
    ]
    assert stdlib, "the final stage does not compile the standard library (python:3.11-slim ships none)"
    index, found = stdlib[-1]
    assert index < user_at, "compiled after USER 10001: no write access to the standard library"
    assert found["mode"] in HASH_MODES and found["force"], found


def test_final_stage_never_writes_bytecode_at_run_time() -> None:
    final = _stages(ENGINE)[-1]
    env = " ".join(instruction["value"] for instruction in final if instruction["instruction"] == "ENV")
    assert re.search(r"(^|\s)PYTHONDONTWRITEBYTECODE=1(\s|$)", env), env
