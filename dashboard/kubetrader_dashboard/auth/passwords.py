"""Password hashes with scrypt (the standard library's `hashlib.scrypt`, RFC 7914).

Stored as `scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>` so the cost can be raised later without
breaking existing entries. The parameters are one of the OWASP Password Storage Cheat Sheet's
equivalent minimums for scrypt (N=2^14, r=8, p=5: the CPU cost of N=2^17, p=1 with 16 MiB
instead of 128 MiB per check, so a burst of logins cannot exhaust the API's memory).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

N, R, P = 2**14, 8, 5
KEY_BYTES = 32
PREFIX = "scrypt"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # maxmem above 128 * n * r bytes, or OpenSSL refuses the parameters.
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES, maxmem=256 * n * r + 2**20)


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    if not password:
        raise ValueError("password: must not be empty")
    salt = os.urandom(16)
    return f"{PREFIX}${n}${r}${p}${_b64(salt)}${_b64(_scrypt(password, salt, n, r, p))}"


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches `stored`; a malformed entry never matches (and never raises)."""
    try:
        prefix, n, r, p, salt, expected = stored.split("$")
        if prefix != PREFIX:
            return False
        got = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
        return hmac.compare_digest(got, base64.b64decode(expected))
    except (ValueError, TypeError):
        return False


def check_hash_format(stored: str) -> str:
    """Raise ValueError naming the problem when `stored` is not a hash this module wrote."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != PREFIX:
        raise ValueError("must be an scrypt hash (scrypt$N$r$p$salt$hash): write it with "
                         "`python -m kubetrader_dashboard.auth hash-password`")  # fmt: skip
    return stored
