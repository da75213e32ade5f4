"""The key that signs a study's pickled sampler state, and the signature itself.

Optuna's CMA-ES sampler keeps its optimizer between asks as a pickle in trial system
attributes (`cma:optimizer:<i>`, hex chunks of `pickle.dumps(optimizer)`) and unpickles
the newest one on every ask (optuna/samplers/_cmaes.py `_restore_optimizer`). Whoever can
write the study storage (the journal on the shared data volume, the `optuna` database)
could plant a pickle that runs code in the driver. So our sampler signs what it stores
with HMAC-SHA256 and verifies before unpickling (kubetrader.optimize.samplers).

The key: `$KUBETRADER_STUDY_SIGNING_KEY` (the chart fills it from a Secret). A shared
storage (inside a Kubernetes pod, or a database server) without that key refuses cmaes,
because a key kept beside the storage protects nothing. On one machine, with a local
journal or SQLite file, a key of the user's own is created once under
`$XDG_CONFIG_HOME/kubetrader/` (mode 0600), so a local cmaes study resumes without setup.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from kubetrader.errors import SpecError

KEY_ENV = "KUBETRADER_STUDY_SIGNING_KEY"
KEY_FILE = "study-signing.key"
MIN_KEY_LENGTH = 16
SIGNATURE_HEX_LENGTH = 64  # SHA-256
LOCAL_SCHEMES = ("journal://", "sqlite:")


def is_shared_storage(storage_url: str) -> bool:
    """Storage others can write: any storage inside a pod (the data volume is shared by the
    pods of the namespace), or a database server from anywhere."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    return not storage_url.startswith(LOCAL_SCHEMES)


def _user_key_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kubetrader" / KEY_FILE


def _local_key() -> bytes:
    path = _user_key_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = secrets.token_hex(32)
        partial = path.with_name(f".{KEY_FILE}.{os.getpid()}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key)
        try:
            os.link(partial, path)  # atomic, and never over a key another process made first
        except FileExistsError:
            pass
        finally:
            partial.unlink()
    return path.read_text().strip().encode()


def signing_key(storage_url: str) -> bytes:
    """The key for a study on `storage_url`, or SpecError saying how to provide one."""
    key = os.environ.get(KEY_ENV, "").strip()
    if key:
        if len(key) < MIN_KEY_LENGTH:
            raise SpecError(KEY_ENV, f"the study signing key must have at least {MIN_KEY_LENGTH} characters")
        return key.encode()
    if is_shared_storage(storage_url):
        raise SpecError(
            "sampler.type",
            f"cmaes keeps pickled state in the study storage, which is shared here; set {KEY_ENV} "
            "(the chart's auth.studySigning Secret) so that state is signed, or use another sampler",
        )
    return _local_key()


def sign(key: bytes, payload: bytes) -> str:
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def verify(key: bytes, payload: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(key, payload), signature)
