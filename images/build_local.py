"""Build the three images without a Docker daemon, then smoke-run each one as uid 10001.

`make images-local` runs this. It uses Debian's `buildah` (root, `--isolation chroot`,
`--storage-driver vfs`: no daemon, no user namespaces, no overlay mounts) on the
Dockerfiles in this folder *unchanged*. Where no registry base can be pulled, the base
image `PYTHON_IMAGE` is made locally with `debootstrap` (Debian bookworm with python3,
python3-venv and passwd, `python` linked to `python3`) plus the CA bundle this machine's
pip trusts, so `pip install` inside the build reaches the package index. The base and
buildah's layer cache stay in buildah's storage, so a second run on the same machine
rebuilds only what changed.

Smoke runs, each as uid 10001 with the image's own ENTRYPOINT/CMD, read from the image:
- engine: `kubetrader run -f` of the bundled example (a real Backtest, exit 0, a result);
- operator: the operator's liveness check (`--check`: imports every handler module);
- dashboard: the API serves `/healthz` inside the image.

Any missing file, wrong path, missing package, or a process that needs root fails the
run with the image's output.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UID = "10001:10001"
BASE_IMAGE = "localhost/pybase:3.11"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
# buildah without a daemon: chroot isolation and vfs storage work as root with no kernel features
# beyond chroot (https://github.com/containers/buildah/blob/main/docs/buildah-build.1.md, --isolation).
BUILDAH_ENV = {"BUILDAH_ISOLATION": "chroot", "STORAGE_DRIVER": "vfs"}


class BuildError(RuntimeError):
    """A build or smoke step failed; the message says which and shows its output."""


def _env() -> dict[str, str]:
    return {**os.environ, **BUILDAH_ENV}


def run(argv: list[str], *, timeout: float = 3600, capture: bool = False) -> str:
    """Run a command; raise `BuildError` with its output when it fails (never swallowed)."""
    started = time.monotonic()
    try:
        result = subprocess.run(
            argv, env=_env(), capture_output=capture, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{' '.join(argv[:4])} ... did not finish in {timeout:.0f} s") from exc
    if result.returncode != 0:
        output = f"\n{result.stdout}\n{result.stderr}" if capture else ""
        raise BuildError(f"{' '.join(argv[:4])} ... exited {result.returncode}{output}")
    if not capture:
        print(f"  ({time.monotonic() - started:.1f} s)", flush=True)
    return result.stdout if capture else ""


def image_exists(name: str) -> bool:
    result = subprocess.run(
        ["buildah", "inspect", "--type", "image", name], env=_env(), capture_output=True, text=True, check=False
    )
    return result.returncode == 0


def pip_ca_bundle() -> Path:
    """The CA bundle this machine's pip trusts (`pip config list`: global.cert / PIP_CERT)."""
    candidates = [os.environ.get("PIP_CERT", "")]
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        if key.strip().endswith(".cert"):
            candidates.append(value.strip().strip("'\""))
    candidates.append("/etc/ssl/certs/ca-certificates.crt")
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise BuildError("no CA bundle found for pip (pip config list names none, /etc/ssl/certs has none)")


def make_base(name: str = BASE_IMAGE) -> None:
    """A python:3.11-slim stand-in from Debian packages, committed to buildah's storage once."""
    if image_exists(name):
        print(f"base image {name}: cached")
        return
    for tool in ("debootstrap", "buildah"):
        if shutil.which(tool) is None:
            raise BuildError(f"'{tool}' is not on PATH (make images-local installs it with apt-get)")
    print(f"base image {name}: debootstrap {DEBIAN_SUITE} (a few minutes, once per machine)", flush=True)
    with tempfile.TemporaryDirectory(prefix="kubetrader-pybase-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,passwd,ca-certificates",
                DEBIAN_SUITE,
                str(rootfs),
                DEBIAN_MIRROR,
            ]
        )
        commit_rootfs(rootfs, name)


def commit_rootfs(rootfs: Path, name: str) -> None:
    """Finish a debootstrap tree as a Python base image and commit it to buildah's storage."""
    (rootfs / "usr/bin/python").unlink(missing_ok=True)
    (rootfs / "usr/bin/python").symlink_to("python3")
    bundle = rootfs / "usr/local/share/kubetrader/pip-ca.crt"
    bundle.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pip_ca_bundle(), bundle)
    # pip inside the build trusts the same bundle as pip on this machine.
    (rootfs / "etc/pip.conf").write_text(f"[global]\ncert = /{bundle.relative_to(rootfs)}\n")
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):  # the .debs and indexes: 100 MB nobody reads
        for entry in (rootfs / cache).glob("*"):
            if entry.is_file():
                entry.unlink()
    container = run(["buildah", "from", "scratch"], capture=True).strip()
    try:
        mount = run(["buildah", "mount", container], capture=True).strip()
        run(["cp", "-a", f"{rootfs}/.", mount])
        run(["buildah", "umount", container])
        run(
            [
                "buildah",
                "config",
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--cmd",
                "python3",
                container,
            ]
        )
        run(["buildah", "commit", "--rm", container, name])
    except BaseException:
        subprocess.run(["buildah", "rm", container], env=_env(), capture_output=True, check=False)
        raise


def build(dockerfile: Path, tag: str, base: str) -> None:
    print(f"build {tag} from {dockerfile.relative_to(ROOT)}", flush=True)
    run(
        [
            "buildah",
            "bud",
            "--layers",
            "--pull-never",
            "--build-arg",
            f"PYTHON_IMAGE={base}",
            "-f",
            str(dockerfile),
            "-t",
            tag,
            str(ROOT),
        ]
    )


def image_argv(tag: str) -> list[str]:
    """ENTRYPOINT + CMD of the built image, as a container runtime would start it."""
    config = image_config(tag)
    return [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]


def image_config(tag: str) -> dict[str, list[str]]:
    """The OCI image config (Entrypoint, Cmd, Env, User) of a built image.

    Read from `buildah inspect`'s whole JSON document: Debian's buildah 1.28 has no `json`
    template function for `--format`.
    """
    document = json.loads(run(["buildah", "inspect", "--type", "image", tag], capture=True))
    return dict(document["OCIv1"]["config"])


def smoke(tag: str, args: list[str] | None, *, volumes: dict[str, str], timeout: float) -> str:
    """Run the image's ENTRYPOINT (with `args` replacing CMD) as uid 10001; return its output."""
    config = image_config(tag)
    argv = [*(config.get("Entrypoint") or []), *(args if args is not None else config.get("Cmd") or [])]
    return _run_in_image(tag, argv, volumes=volumes, timeout=timeout)


def smoke_engine(tag: str) -> None:
    with tempfile.TemporaryDirectory(prefix="kubetrader-smoke-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        os.chown(data, 10001, 10001)
        out = smoke(
            tag,
            ["run", "-f", "/examples/backtest-sma.yaml", "--output", "/data/results", "--json"],
            volumes={str(ROOT / "examples"): "/examples:ro", str(data): "/data"},
            timeout=600,
        )
        results = list((data / "results").rglob("*.json"))
        if not results:
            raise BuildError(f"engine smoke: no result written\n{out}")
        print(f"  engine: Backtest ran as {UID}, {len(results)} result file(s)")


def smoke_operator(tag: str) -> None:
    """The operator's handler modules import and register with kopf (no cluster needed)."""
    script = (
        "import kopf, kubetrader_operator.main\n"
        "from kubetrader_operator.__main__ import kopf_args\n"
        "registry = kopf.get_default_registry()\n"
        # kopf keeps one sub-registry per handler family (_changing, _spawning, _watching, ...): count them all.
        "subs = [v for v in vars(registry).values() if hasattr(v, 'get_all_handlers')]\n"
        "count = sum(len(list(r.get_all_handlers())) for r in subs)\n"
        "assert count > 0, 'no kopf handlers registered'\n"
        "print(count, 'handlers;', ' '.join(kopf_args()))\n"
    )
    out = _run_in_image(tag, ["python", "-c", script], volumes={}, timeout=300)
    print(f"  operator: {out.strip()[:120]} (as {UID})")


def smoke_dashboard(tag: str) -> None:
    """The image's own CMD serves the API; `/api/v1/healthz` answers from the host."""
    port = _free_port()
    argv = [str(port) if previous == "--port" else arg for previous, arg in _pairs(image_argv(tag))]
    container = run(["buildah", "from", "--pull-never", tag], capture=True).strip()
    process = subprocess.Popen(  # the API in the image, on the host's network (chroot isolation)
        ["buildah", "run", "--user", UID, container, "--", *argv],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/healthz", timeout=2) as response:
                    body = response.read().decode()
                break
            except OSError as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read() if process.stdout else ""
                    raise BuildError(f"dashboard smoke: the API did not answer ({exc})\n{output}") from exc
                time.sleep(0.5)
        print(f"  dashboard: {' '.join(argv)} answered /api/v1/healthz as {UID}: {body[:80]}")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        subprocess.run(["buildah", "rm", container], env=_env(), capture_output=True, check=False)


def _pairs(argv: list[str]) -> list[tuple[str, str]]:
    return list(zip(["", *argv[:-1]], argv, strict=True))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_in_image(tag: str, argv: list[str], *, volumes: dict[str, str], timeout: float) -> str:
    container = run(["buildah", "from", "--pull-never", tag], capture=True).strip()
    try:
        mounts = [f"--volume={host}:{inside}" for host, inside in volumes.items()]
        return run(["buildah", "run", "--user", UID, *mounts, container, "--", *argv], capture=True, timeout=timeout)
    finally:
        subprocess.run(["buildah", "rm", container], env=_env(), capture_output=True, check=False)


def image_names() -> dict[str, str]:
    """Image names from images/images.env (the Makefile's and the chart's source), overridable by env."""
    values: dict[str, str] = {}
    for line in (ROOT / "images" / "images.env").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            for name, known in values.items():
                value = value.replace(f"$({name})", known)
            values[key.strip()] = os.environ.get(key.strip(), value.strip())
    return values


IMAGES = {
    "engine": ("ENGINE_IMAGE", smoke_engine),
    "operator": ("OPERATOR_IMAGE", smoke_operator),
    "dashboard": ("DASHBOARD_IMAGE", smoke_dashboard),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", default=list(IMAGES), choices=list(IMAGES))
    parser.add_argument("--base", default=os.environ.get("PYTHON_IMAGE_LOCAL", BASE_IMAGE))
    parser.add_argument("--no-smoke", action="store_true")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        make_base(args.base)
        names = image_names()
        for name in args.images:
            variable, check = IMAGES[name]
            tag = names[variable]
            build(ROOT / "images" / f"{name}.Dockerfile", tag, args.base)
            if not args.no_smoke:
                check(tag)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"images-local: done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
