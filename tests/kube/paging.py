"""`limit` and `continue` on lists, as the API server pages them.

Objects come in key order (etcd's `/registry/<resource>/<namespace>/<name>`: by namespace, then
name). A page of `limit` items carries `metadata.continue`, an opaque token naming the list's
resourceVersion and the key to start after, and `remainingItemCount`; the last page has neither
(k8s.io/apiserver pkg/storage/continue.go: base64 of `{"v":"meta.k8s.io/v1","rv":..,"start":..}`).
A token that does not decode is 400 BadRequest. The stand-in keeps no snapshots, so a later
page shows the objects as they are now (the API server would serve the list's revision, or
410 once compacted).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

Obj = dict[str, Any]


class ContinueError(ValueError):
    """A `continue` token or `limit` the API server would refuse."""


def _key(obj: Obj) -> str:
    meta = obj.get("metadata", {})
    return f"{meta.get('namespace') or ''}/{meta.get('name', '')}"


def _decode(token: str) -> tuple[int, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
        if data.get("v") != "meta.k8s.io/v1":
            raise ContinueError(
                "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
            )
        return int(data["rv"]), str(data["start"])
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        if isinstance(exc, ContinueError):
            raise
        raise ContinueError(f"continue key is not valid: {exc}") from None


def _encode(revision: int, start: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": start}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def page(items: list[Obj], params: Mapping[str, str], revision: int) -> tuple[list[Obj], Obj]:
    """The items of this page (in key order) and the list's metadata."""
    ordered = sorted(items, key=_key)
    list_revision = revision
    if params.get("continue"):
        list_revision, start = _decode(params["continue"])
        ordered = [obj for obj in ordered if _key(obj) >= start]
    limit_text = params.get("limit")
    if not limit_text:
        return ordered, {"resourceVersion": str(list_revision)}
    try:
        limit = int(limit_text)
    except ValueError:
        raise ContinueError(f"limit: Invalid value: {limit_text!r}") from None
    if limit <= 0 or limit >= len(ordered):
        return ordered, {"resourceVersion": str(list_revision)}
    shown, rest = ordered[:limit], ordered[limit:]
    metadata: Obj = {
        "resourceVersion": str(list_revision),
        "continue": _encode(list_revision, _key(rest[0])),
        "remainingItemCount": len(rest),
    }
    return shown, metadata
