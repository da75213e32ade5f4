"""What a result needs besides its spec and bars to be reproduced: the software that computed it.

The versions of Python and of every library whose arithmetic reaches a result
(pandas, numpy, numba, Backtrader) and of kubetrader itself, and the git commit
when the package runs from a checkout. Both are read once per process: versions
from the installed distributions' metadata (importing numba just to ask would cost
half a second), the commit from the files under `.git` (no `git` process on every
run; a process does not change its code while it runs).

`result_metadata` builds a result's metadata for successful and failed runs alike,
so the two can never record different things.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
from pathlib import Path
from typing import Any

from kubetrader import __version__
from kubetrader.results.schema import DatasetRecord, ResultMetadata

# Distributions whose versions every result records (keys of `versions`, besides python and kubetrader).
RECORDED_PACKAGES: tuple[str, ...] = ("pandas", "numpy", "numba", "backtrader")


@functools.cache
def versions() -> dict[str, str]:
    """{"python": ..., "kubetrader": ..., "pandas": ..., ...}; "absent" for a package that is not installed."""
    found = {"python": platform.python_version(), "kubetrader": __version__}
    for name in RECORDED_PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def _git_dir(root: Path) -> Path | None:
    """`root/.git` as a directory, or the directory a worktree's `.git` file points to."""
    dot_git = root / ".git"
    if dot_git.is_dir():
        return dot_git
    if dot_git.is_file():
        text = dot_git.read_text(encoding="utf-8").strip()
        if text.startswith("gitdir:"):
            target = Path(text.removeprefix("gitdir:").strip())
            return target if target.is_absolute() else (root / target).resolve()
    return None


def _resolve_ref(git_dir: Path, ref: str) -> str | None:
    """A ref's commit from loose refs (the worktree's own dir, then the common dir) or packed-refs.

    A worktree keeps HEAD in its own git dir and names the shared one in `commondir`
    (git-worktree(1), "Details"); branches live in the common dir, loose or in
    `packed-refs` (git-pack-refs(1)).
    """
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.is_file():
        common = (git_dir / commondir.read_text(encoding="utf-8").strip()).resolve()
    for base in dict.fromkeys((git_dir, common)):
        loose = base / ref
        if loose.is_file():
            return loose.read_text(encoding="utf-8").strip() or None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8").splitlines():
            sha, _, name = line.partition(" ")
            if name.strip() == ref and not line.startswith(("#", "^")):
                return sha
    return None


def read_git_commit(root: Path) -> str | None:
    """The commit checked out at `root` (a repository or a worktree), from its files; None if not a checkout."""
    try:
        git_dir = _git_dir(root)
        if git_dir is None:
            return None
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
        if head.startswith("ref:"):
            return _resolve_ref(git_dir, head.removeprefix("ref:").strip())
        return head or None
    except OSError:  # unreadable: the result says "unknown" rather than failing the run
        return None


@functools.cache
def git_commit() -> str | None:
    """The commit of the source tree kubetrader runs from (an editable install of a checkout), else None.

    Only the tree the package itself lives in is looked at (`engine/kubetrader`
    -> the repository root, as `kubetrader.data.bundled` does); an installed wheel
    has no such tree, and a `.git` further up belongs to something else.
    """
    import kubetrader

    root = Path(kubetrader.__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        return None
    return read_git_commit(root)


def result_metadata(
    spec: Any,
    *,
    name: str,
    data_hash: str = "",
    datasets: list[DatasetRecord] | None = None,
    first_bar: str | None = None,
    last_bar: str | None = None,
    started_at: str,
    finished_at: str,
    wall_seconds: float = 0.0,
) -> ResultMetadata:
    """The metadata of a result of `spec` (a BacktestSpec), successful or failed."""
    from kubetrader.runner import result_id
    from kubetrader.specs import spec_hash

    recorded = versions()
    return ResultMetadata(
        id=result_id(name, spec),
        name=name,
        strategy=spec.strategy.path,
        symbols=list(spec.data.symbols),
        start=spec.data.start.isoformat(),
        end=spec.data.end.isoformat(),
        first_bar=first_bar,
        last_bar=last_bar,
        spec_hash=spec_hash(spec),
        data_hash=data_hash,
        package_version=__version__,
        backtrader_version=recorded["backtrader"],
        versions=recorded,
        git_commit=git_commit(),
        datasets=datasets or [],
        started_at=started_at,
        finished_at=finished_at,
        wall_seconds=round(wall_seconds, 4),
    )
