"""Starts one container process inside its pod's namespaces, as a container runtime would.

Run as root by the node agent under `ip netns exec POD_NETNS` (which gives it the pod's network
and a private mount namespace with the pod's /etc/hosts):

    python -m tests.kube.node.launch SPEC.json

SPEC says what to bind-mount where (the pod's volumes at their `mountPath`s, read-only when the
mount says so), a fresh /dev (tmpfs with null, zero, full, random, urandom, tty, shm, and the
termination-message file), the uid, gid and supplementary groups (`runAsUser`, `runAsGroup`,
`fsGroup`), the working directory, the environment and the argv; then it execs the program.
A mount target missing on the host is created as an empty directory (or file) first.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"launch: mount {' '.join(args)}: {done.stderr.strip()}")


MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 32, 4096, 16384


def _bind_fd(handle: int, target: str, *, read_only: bool = False) -> None:
    """mount(2) MS_BIND of what `handle` holds open: the kernel follows /proc/self/fd/N to the
    opened file even where a later mount now hides its path (mount(8) would canonicalize the
    link to that hidden path first)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(f"/proc/self/fd/{handle}".encode(), target.encode(), None, MS_BIND, None) != 0:
        raise SystemExit(f"launch: bind mount onto {target}: {os.strerror(ctypes.get_errno())}")
    if read_only and libc.mount(None, target.encode(), None, MS_BIND | MS_REMOUNT | MS_RDONLY, None) != 0:
        raise SystemExit(f"launch: read-only remount of {target}: {os.strerror(ctypes.get_errno())}")


def _bind(handle: int, target: str, read_only: bool) -> None:
    """Bind the volume held open as `handle` onto `target` (made first if missing)."""
    dst = Path(target)
    if stat.S_ISDIR(os.fstat(handle).st_mode):
        dst.mkdir(parents=True, exist_ok=True)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.touch(exist_ok=True)
    _bind_fd(handle, target, read_only=read_only)


def _fresh_dev(spec: dict[str, Any]) -> None:
    """A container's /dev: the host's device nodes this process needs, nothing else."""
    scratch = Path(spec["dev_dir"])
    _mount("--make-rprivate", "/")
    _mount("-t", "tmpfs", "-o", "mode=755,size=64k", "tmpfs", "/dev")
    for name in DEVICES:
        (Path("/dev") / name).touch()
        _mount("--bind", str(scratch / name), f"/dev/{name}")
    Path("/dev/shm").mkdir()
    _mount("-t", "tmpfs", "-o", "mode=1777,size=256m", "tmpfs", "/dev/shm")
    Path("/dev/pts").mkdir()
    for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1")):
        os.symlink(target, f"/dev/{link}")
    os.symlink("/proc/self/fd/2", "/dev/stderr")


def main(argv: list[str]) -> None:
    spec = json.loads(Path(argv[1]).read_text())
    # The host's device nodes, reachable after /dev is replaced: bind them to a scratch dir first.
    scratch = Path(spec["dev_dir"])
    scratch.mkdir(parents=True, exist_ok=True)
    _mount("--make-rprivate", "/")
    for name in DEVICES:
        (scratch / name).touch()
        _mount("--bind", f"/dev/{name}", str(scratch / name))
    handles = [os.open(mount["source"], os.O_PATH) for mount in spec["mounts"]]
    # What stands in for the image's files (the interpreter, the venv, the repository), held open
    # now: a volume mounted over a parent (/tmp, for a checkout under /tmp) would hide them.
    runtime = [(path, os.open(path, os.O_PATH), os.stat(path)) for path in spec.get("runtime", [])]
    if any(path.startswith("/root/") for path, _, _ in runtime):
        _mount("-t", "tmpfs", "-o", "mode=755,size=1m", "tmpfs", "/root")  # root's home is not the pod's
    _fresh_dev(spec)
    for mount, handle in zip(spec["mounts"], handles, strict=True):
        _bind(handle, mount["target"], bool(mount.get("readOnly")))
    for path, handle, before in runtime:
        try:
            now = os.stat(path)
            visible = (now.st_dev, now.st_ino) == (before.st_dev, before.st_ino)
        except FileNotFoundError:
            visible = False
        if not visible:
            Path(path).mkdir(parents=True, exist_ok=True)
            _bind_fd(handle, path, read_only=True)
    for handle in [*handles, *(h for _, h, _ in runtime)]:
        os.close(handle)
    os.setgroups([int(g) for g in spec["groups"]])
    os.setgid(int(spec["gid"]))
    os.setuid(int(spec["uid"]))
    # The container dies with the node agent (the thread that started it), even a SIGKILLed one:
    # set after setuid, which clears it (prctl(2) PR_SET_PDEATHSIG); kept across exec.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    env = {str(k): str(v) for k, v in spec["env"].items()}
    os.chdir(spec.get("cwd") or "/")
    program = spec["argv"]
    try:
        os.execvpe(program[0], program, env)
    except OSError as exc:
        # What a runtime reports when the entrypoint cannot run (exit 127/126 as a shell would).
        print(f'exec: "{program[0]}": {exc.strerror}', file=sys.stderr, flush=True)
        raise SystemExit(127 if isinstance(exc, FileNotFoundError) else 126) from None


if __name__ == "__main__":
    main(sys.argv)
