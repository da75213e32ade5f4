"""Cold start inside the engine image, as a Backtest Job runs it (goal: `kubetrader run` <= 1.5 s).

The Job runs the image as uid 10001 on a read-only root filesystem with an empty data volume
(`/data`, an emptyDir unless a PVC is configured) and an empty scratch volume for HOME, TMPDIR and
MPLCONFIGDIR (kubetrader_operator.jobs). Here the image runs with `buildah run` as uid 10001; the
venv in it is root-owned, so, as on a read-only root, no `.pyc` can be written at run time: a module
without valid precompiled bytecode is compiled again by every process. Each timed run gets a fresh
data directory and a fresh scratch directory, as each Job does.

Timed inside the container (the container's own start is the runtime's, not the image's):
- `kubetrader --help`;
- `kubetrader run -f examples/backtest-sma.yaml` (the bundled ORCL data registered into the empty
  store, the result files written);
medians of KT_BENCH_IMAGE_RUNS (5) after one warm-up, wall and CPU (user + system: what the
machine's load inflates least). Also counted: the venv's and the standard library's
source files whose bytecode is missing or stale (each one is compiled on every start).

Needs buildah and the image (`make images-local IMAGES_LOCAL=engine`); otherwise the bench says
"skipped: no image" and exits 0.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
RUNS = int(os.environ.get("KT_BENCH_IMAGE_RUNS", "5"))
UID = 10001
GOALS = {"kubetrader run -f examples/backtest-sma.yaml": "<= 1.5 s"}

# Runs inside the image with its own Python: times each command as a whole process and checks the
# venv's bytecode the way the import system does (PEP 552 header: hash-based, or mtime + size).
HARNESS = r"""
import json, os, resource, statistics, subprocess, sys, sysconfig, tempfile, time
from importlib.util import cache_from_source

runs, commands = int(sys.argv[1]), json.loads(sys.argv[2])
site, stdlib = sysconfig.get_paths()["purelib"], sysconfig.get_paths()["stdlib"]

def bytecode_state(source):
    try:
        with open(cache_from_source(source), "rb") as handle:
            header = handle.read(16)
    except OSError:
        return "missing"
    flags = int.from_bytes(header[4:8], "little")
    if flags & 1:
        return "hash-unchecked" if not flags & 2 else "hash-checked"
    stat = os.stat(source)
    fresh = int.from_bytes(header[8:12], "little") == int(stat.st_mtime) & 0xFFFFFFFF
    fresh = fresh and int.from_bytes(header[12:16], "little") == stat.st_size & 0xFFFFFFFF
    return "timestamp" if fresh else "stale"

def states(root):
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "site-packages" and d != "dist-packages"]
        for name in files:
            if name.endswith(".py"):
                state = bytecode_state(os.path.join(folder, name))
                found[state] = found.get(state, 0) + 1
    return found

def once(argv):
    scratch = tempfile.mkdtemp(dir="/scratch")
    env = {**os.environ, "HOME": scratch, "TMPDIR": scratch, "MPLCONFIGDIR": scratch + "/matplotlib",
           "KUBETRADER_DATA_DIR": tempfile.mkdtemp(dir="/data")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=scratch, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")
    return elapsed, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime

for argv in commands.values():
    once(argv)
times = {label: [] for label in commands}
for _ in range(runs):
    for label, argv in commands.items():
        times[label].append(once(argv))
print(json.dumps({
    "wall": {label: statistics.median(wall for wall, _ in values) for label, values in times.items()},
    "cpu": {label: statistics.median(cpu for _, cpu in values) for label, values in times.items()},
    "bytecode": {"venv": states(site), "standard library": states(stdlib)},
    "venv_writable": os.access(site, os.W_OK),
    "uid": os.getuid(),
    "python": sys.version.split()[0],
}))
"""


def _build_local() -> ModuleType:
    """images/build_local.py (not a package): its image names, buildah environment and runner, one place."""
    sys.path.insert(0, str(ROOT / "images"))
    try:
        return importlib.import_module("build_local")
    finally:
        sys.path.pop(0)


def main() -> int:
    if shutil.which("buildah") is None:
        print("engine image cold start: skipped: no image (buildah is not on PATH)")
        return 0
    build_local = _build_local()
    tag = build_local.image_names()["ENGINE_IMAGE"]
    if not build_local.image_exists(tag):
        print(f"engine image cold start: skipped: no image ({tag} not built: make images-local IMAGES_LOCAL=engine)")
        return 0
    commands = {
        "kubetrader --help": ["kubetrader", "--help"],
        "kubetrader run -f examples/backtest-sma.yaml": [
            "kubetrader", "run", "-f", "/examples/backtest-sma.yaml", "--output", "/scratch/results",
        ],
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="kt-bench-image-") as tmp:
        volumes = {str(ROOT / "examples"): "/examples:ro"}
        for name in ("data", "scratch"):  # the Job's data and scratch volumes, writable by uid 10001 only
            path = Path(tmp) / name
            path.mkdir()
            os.chown(path, UID, UID)
            volumes[str(path)] = f"/{name}"
        argv = ["python", "-c", HARNESS, str(RUNS), json.dumps(commands)]
        out = build_local._run_in_image(tag, argv, volumes=volumes, timeout=1800)  # as 10001, container removed
    report = json.loads(out.strip().splitlines()[-1])
    print(f"image {tag}: Python {report['python']}, uid {report['uid']}, venv writable: {report['venv_writable']}")
    for where, states in report["bytecode"].items():
        counts = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
        print(f"{where} source files by bytecode: {counts} (missing or stale: compiled on every start)")
    print(f"whole processes inside the image, medians of {RUNS} runs after a warm-up, fresh /data and scratch each\n")
    print(f"{'command':<46}{'wall':>8}{'CPU':>8}{'goal':>11}")
    for label, wall in report["wall"].items():
        print(f"{label:<46}{wall:>7.2f}s{report['cpu'][label]:>7.2f}s{GOALS.get(label, ''):>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
