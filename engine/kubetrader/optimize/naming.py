"""The one name of a study's state: its Optuna study, the work-queue batch of its trials
(`study-{key}`), its trial keys (`{key}-t{n}`), its progress key and its local journal file;
and the name of each walk-forward window's study (`window_study_key`), built on the same key.

Why one function: the driver, the operator (cancelling trials, reading progress) and the
walk-forward windows must agree on it, and two copies drift. Why these parts: a study's
state used to be keyed by its name alone, globally, so tenant B creating and deleting a
study named like tenant A's cancelled A's queued trials and copied A's best into B's status
(issue 21 finding 6). So the key holds

- the namespace (when there is one: the operator's ConfigMap says it; a local run without
  `metadata.namespace` keeps the bare name, so local studies resume as before), and
- the resource's uid unless `spec.studyName` names the study: a study without an explicit
  name belongs to that one resource (a deleted namesake in the same namespace cannot touch
  it, and a re-created resource starts afresh instead of resuming trials run on another
  definition), while an explicit `studyName` is the user's durable handle, shared by the
  resources of that namespace that name it and resumed by them.

Namespaces are DNS labels (no `.`), so `{namespace}.` is an unambiguous prefix, and the uid
part is always 8 hex digits at the end. A key longer than MAX_KEY is cut and given a digest
of the whole, so a trial key (`{key}-t{n}`) always fits the queue's 128-character ids.

Upgrading: a cluster study started before this change is under its bare name; after it its
driver looks under the new key (see README, "Studies in a cluster").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

MAX_KEY = 110  # + "-t" + a trial number (8 digits) <= 120 < the queue's 128-character ids
_UID_PART = 8


def study_key(name: str, *, study_name: str | None = None, namespace: str | None = None, uid: str | None = None) -> str:
    """The key of a study's state (see the module docstring).

    `name`: the resource's metadata.name (or the CLI's --study-name); `study_name`: its
    spec.studyName, which wins over `name` and drops the uid.
    """
    base = study_name or name
    key = f"{namespace}.{base}" if namespace else base
    if uid and not study_name:
        key = f"{key}.{uid.replace('-', '')[:_UID_PART]}"
    if len(key) <= MAX_KEY:
        return key
    digest = hashlib.sha256(f"{namespace}/{base}/{uid if not study_name else ''}".encode()).hexdigest()[:16]
    return f"{key[: MAX_KEY - len(digest) - 1]}.{digest}"


def trial_batch(key: str) -> str:
    """The work-queue batch of a study's trials."""
    return f"study-{key}"


def window_study_key(key: str, index: int, definition: Mapping[str, Any]) -> str:
    """The Optuna study of walk-forward window `index` of the study keyed `key` (`study_key`).

    `definition` holds the window's backtest (strategy, dates, costs), space, constraints,
    objective and the hash of its bars: a re-run with other windows, data or space gets fresh
    studies instead of resuming trials that saw other bars (a look-ahead, issue 22 finding 1);
    the same definition resumes its own. Built on `study_key`, so a window's study carries the
    namespace and uid like any other (two tenants' walk-forward studies of one name never
    share trials), and stays within MAX_KEY: its trial keys fit the queue's ids.
    """
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True, default=str).encode()).hexdigest()[:10]
    suffix = f"-w{index}-{digest}"
    if len(key) + len(suffix) > MAX_KEY:
        key = f"{key[: MAX_KEY - len(suffix) - 9]}.{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    return f"{key}{suffix}"
