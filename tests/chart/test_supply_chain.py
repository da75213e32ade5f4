"""Supply chain (#21): both locks carry a sha256 for every pin, the images install only hashed
archives, and the runtime lock pins exactly what the development lock pins."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCKS = {name: ROOT / "requirements" / name for name in ("lock.txt", "runtime.txt")}
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)", re.MULTILINE)


def _requirements(path: Path) -> dict[str, list[str]]:
    """pin -> its --hash options, from a pip requirements file (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = PIN.match(line)
        if match:
            out[f"{match.group(1).lower()}=={match.group(2)}"] = re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
    return out


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_every_pin_of_the_lock_has_a_sha256(name: str) -> None:
    requirements = _requirements(LOCKS[name])
    assert len(requirements) > 100
    unhashed = [pin for pin, hashes in requirements.items() if not hashes]
    assert unhashed == [], f"{name}: pins without a hash (re-run `make lock`)"


def test_the_runtime_lock_pins_the_same_versions_as_the_development_lock() -> None:
    def versions(name: str) -> dict[str, str]:
        return dict(pin.split("==") for pin in _requirements(LOCKS[name]))

    dev, runtime = versions("lock.txt"), versions("runtime.txt")
    differ = {name: (dev[name], version) for name, version in runtime.items() if name in dev and dev[name] != version}
    assert differ == {}
    assert {"optuna", "cmaes", "mlflow", "flask-wtf", "hatchling"} <= set(runtime)
    assert not {"pytest", "ruff", "mypy"} & set(runtime)  # no dev tools in the images
