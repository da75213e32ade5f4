"""Runtime dependencies are declared as runtime: what the images install is what the code imports.

The images run `pip install --constraint requirements/lock.txt .` (no extras), so a library
that the shipped packages import but that is declared only in the `dev` extra (or not at all)
is missing in every Job, worker and pod. Two checks:

- a static one over the source: every third-party module imported by the four shipped
  packages belongs to a distribution in the runtime closure of `kubetrader` (its
  requirements without extras, followed transitively through the installed metadata);
- a real one: the package installed without extras into a fresh virtualenv imports every
  module and answers `--help` for every CLI subcommand.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "kubetrader": ROOT / "engine" / "kubetrader",
    "kubetrader_operator": ROOT / "operator" / "kubetrader_operator",
    "kubetrader_dashboard": ROOT / "dashboard" / "kubetrader_dashboard",
    "strategies": ROOT / "strategies",
}
# Modules that are only ever imported under `if TYPE_CHECKING:` are not needed at run time.
_TYPE_CHECKING = re.compile(r"^\s*if (typing\.)?TYPE_CHECKING:")


def _sources() -> list[Path]:
    return [path for root in PACKAGES.values() for path in sorted(root.rglob("*.py"))]


def _runtime_imports(path: Path) -> set[str]:
    """Top-level module names imported by `path`, outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _TYPE_CHECKING.match(ast.unparse(node.test).join(["if ", ":"])):
            skipped.update(id(child) for child in ast.walk(node))
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _requirement_name(requirement: str) -> tuple[str, str]:
    """(normalised distribution name, marker text) of one `Requires-Dist` line."""
    name = re.split(r"[\s;\[<>=!~(]", requirement, maxsplit=1)[0]
    marker = requirement.split(";", 1)[1] if ";" in requirement else ""
    return re.sub(r"[-_.]+", "-", name).lower(), marker


def _optional_extras() -> set[str]:
    """Distributions of kubetrader's optional extras other than `dev` (e.g. `kubetrader[quantstats]`).

    Code may import them where the feature is asked for, and must say which extra to install
    when they are missing; `dev` holds the test and lint tools, which shipped code never imports.
    """
    names: set[str] = set()
    for requirement in md.requires("kubetrader") or []:
        dependency, marker = _requirement_name(requirement)
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        if extra and extra.group(1) != "dev":
            names.add(dependency)
    return names


def _runtime_closure(extra: frozenset[str] = frozenset()) -> set[str]:
    """Distributions that `pip install kubetrader` (no extras) brings, by the installed metadata."""
    seen: set[str] = set()
    todo = ["kubetrader", *extra]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for requirement in requires:
            dependency, marker = _requirement_name(requirement)
            if "extra ==" in marker or "extra==" in marker:
                continue
            todo.append(dependency)
    return seen


def test_every_third_party_import_of_the_shipped_packages_is_a_runtime_dependency() -> None:
    owners = md.packages_distributions()
    closure = _runtime_closure(frozenset(_optional_extras()))
    stdlib = set(sys.stdlib_module_names)
    missing: dict[str, set[str]] = {}
    for path in _sources():
        for module in _runtime_imports(path) - stdlib - set(PACKAGES) - {"__future__"}:
            distributions = {re.sub(r"[-_.]+", "-", d).lower() for d in owners.get(module, [])}
            if not distributions:
                missing.setdefault(f"{module} (no installed distribution)", set()).add(str(path.relative_to(ROOT)))
            elif not distributions & closure:
                missing.setdefault(f"{module} ({', '.join(sorted(distributions))})", set()).add(
                    str(path.relative_to(ROOT))
                )
    assert not missing, "imported at run time but not a runtime dependency of kubetrader:\n" + "\n".join(
        f"  {module}: {', '.join(sorted(files))}" for module, files in sorted(missing.items())
    )


def _modules() -> list[str]:
    names = []
    for package, root in PACKAGES.items():
        for path in sorted(root.rglob("*.py")):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__main__":
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join(parts))
    return names


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.xdist_group("packaging")
def test_a_plain_install_without_extras_imports_every_module_and_runs_every_cli_subcommand(tmp_path: Path) -> None:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not installed in the venv (make install-deps installs it)")
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(python), "--constraint", str(ROOT / "requirements" / "lock.txt"),
         str(ROOT)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    # Every module imports in the plain install (one process: the import cost is paid once).
    script = (
        "import importlib, sys, traceback\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed.append(name + ': ' + traceback.format_exc().strip().splitlines()[-1])\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["MPLBACKEND"] = "Agg"
    imported = subprocess.run(
        [str(python), "-c", script, *_modules()], capture_output=True, text=True, cwd=tmp_path, env=env,
        timeout=600, check=False,
    )  # fmt: skip
    assert imported.returncode == 0, f"modules that do not import without extras:\n{imported.stdout}{imported.stderr}"
    # Every CLI subcommand (and sub-subcommand) answers --help; the entry point itself runs once.
    walker = (
        "import click, sys\n"
        "from click.testing import CliRunner\n"
        "from kubetrader.cli.main import cli\n"
        "def walk(cmd, path):\n"
        "    yield path\n"
        "    if isinstance(cmd, click.Group):\n"
        "        ctx = click.Context(cmd)\n"
        "        for name in cmd.list_commands(ctx):\n"
        "            yield from walk(cmd.get_command(ctx, name), [*path, name])\n"
        "commands = list(walk(cli, []))\n"
        "failed = []\n"
        "for path in commands:\n"
        "    result = CliRunner().invoke(cli, [*path, '--help'])\n"
        "    if result.exit_code != 0:\n"
        "        failed.append(' '.join(path) + ': ' + repr(result.exception) + result.output[-300:])\n"
        "print(len(commands), 'commands')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed or len(commands) < 10 else 0)\n"
    )
    helped = subprocess.run(
        [str(python), "-c", walker], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600, check=False
    )
    assert helped.returncode == 0, f"CLI subcommands failing without extras:\n{helped.stdout}{helped.stderr}"
    version = subprocess.run(
        [str(venv / "bin" / "kubetrader"), "--version"], capture_output=True, text=True, env=env, timeout=120,
        check=False,
    )  # fmt: skip
    assert version.returncode == 0 and "kubetrader" in version.stdout, version.stderr
