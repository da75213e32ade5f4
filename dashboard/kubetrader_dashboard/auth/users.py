"""The built-in login's users: a YAML (or JSON) file, in a cluster a mounted Kubernetes Secret.

    users:
      alice: {role: researcher, passwordHash: "scrypt$16384$8$5$..."}
      bob:   {role: trader,     passwordHash: "scrypt$..."}

Only hashes are stored (`python -m kubetrader_dashboard.auth add-user FILE NAME --role R` writes
an entry). The file is read again when it changes, so removing a user or lowering a role takes
effect on that user's next request, without restarting the API (a mounted Secret is updated in
place by the kubelet).

For `make dashboard` with nothing configured, `ensure_local_admin` creates a file with one user,
`admin` (trader), whose random password is kept beside it (readable by its owner only) and printed
by `make dashboard`: zero configuration, and still no API that anyone on the machine can drive.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kubetrader_dashboard.auth.passwords import check_hash_format, hash_password
from kubetrader_dashboard.auth.roles import Role

log = logging.getLogger(__name__)

USER_NAME = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
LOCAL_ADMIN = "admin"


class UserEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    role: Role
    password_hash: str = Field(alias="passwordHash")

    @field_validator("password_hash")
    @classmethod
    def _is_a_hash(cls, value: str) -> str:
        return check_hash_format(value)


class UsersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: dict[str, UserEntry] = Field(default_factory=dict)

    @field_validator("users")
    @classmethod
    def _names(cls, users: dict[str, UserEntry]) -> dict[str, UserEntry]:
        import re

        bad = [name for name in users if not re.match(USER_NAME, name)]
        if bad:
            raise ValueError(f"user names must match {USER_NAME}: {', '.join(map(repr, bad))}")
        return users


def read_users(path: Path) -> UsersFile:
    """Parse a users file; ValueError naming the file and the field when it is wrong."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return UsersFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ValueError(f"{path}: {where}: {first['msg']}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not YAML: {exc}") from None


def write_users(path: Path, users: UsersFile) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(users.model_dump(mode="json", by_alias=True), sort_keys=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


class UserDirectory:
    """The users of one file, re-read when the file changes (its mtime and size)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, UserEntry] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> UserEntry | None:
        if self.path is None:
            return None
        with self._lock:
            try:
                stat = self.path.stat()
            except OSError:
                # A Secret being swapped by the kubelet (its ..data link): keep the last good read.
                return self._users.get(name)
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp:
                try:
                    self._users = dict(read_users(self.path).users)
                except ValueError:
                    log.exception("users file unreadable; keeping the users read before")
                self._stamp = stamp
            return self._users.get(name)


def ensure_local_admin(directory: Path) -> tuple[Path, Path]:
    """The development users file under `directory`, with `admin` (trader) and a random password.

    Returns (users file, password file). An existing file is left as it is (its password too)."""
    users_path = directory / "users.yaml"
    password_path = directory / "admin-password"
    if users_path.exists():
        return users_path, password_path
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    fd = os.open(password_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    entry = UserEntry(role=Role.TRADER, password_hash=hash_password(password))
    write_users(users_path, UsersFile(users={LOCAL_ADMIN: entry}))
    return users_path, password_path
