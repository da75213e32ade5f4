"""The key of a study's state (kubetrader.optimize.naming): one function for the driver, the operator and
the walk-forward windows, so that two tenants' studies of the same name never share state (issue 21)."""

from __future__ import annotations

from kubetrader.optimize.naming import MAX_KEY, study_key, trial_batch, window_study_key
from kubetrader.optimize.queue_evaluator import study_batch
from kubetrader.optimize.study import trial_key

UID_A = "6f1c0a2b-3d4e-4f50-8a6b-7c8d9e0f1a2b"
UID_B = "0b9e8d7c-6a5f-4e3d-9c2b-1a0f9e8d7c6b"


def test_a_local_study_keeps_its_bare_name_so_local_studies_resume_as_before() -> None:
    assert study_key("sma") == "sma"
    assert study_key("sma", study_name="tuning") == "tuning"


def test_the_namespace_and_the_uid_key_a_cluster_study() -> None:
    assert study_key("tiny", namespace="research", uid=UID_A) == "research.tiny.6f1c0a2b"
    assert study_key("tiny", namespace="tenant-b", uid=UID_B) != study_key("tiny", namespace="research", uid=UID_A)
    # a namesake re-created in the same namespace (a new uid) does not share the old one's state
    assert study_key("tiny", namespace="research", uid=UID_B) != study_key("tiny", namespace="research", uid=UID_A)


def test_an_explicit_study_name_is_the_namespaces_durable_handle() -> None:
    """Resources of one namespace that name the same studyName resume it; another namespace's never do."""
    a = study_key("first", study_name="shared", namespace="research", uid=UID_A)
    assert a == study_key("second", study_name="shared", namespace="research", uid=UID_B) == "research.shared"
    assert study_key("first", study_name="shared", namespace="tenant-b", uid=UID_A) == "tenant-b.shared"


def test_a_long_key_is_cut_with_a_digest_so_every_trial_key_fits_the_queue_ids() -> None:
    long_name = "s" * 128
    key = study_key("x", study_name=long_name, namespace="n" * 63, uid=UID_A)
    assert len(key) == MAX_KEY
    assert key != study_key("x", study_name=long_name[:-1] + "t", namespace="n" * 63, uid=UID_A)
    assert len(trial_key(key, 99_999_999)) <= 128


def test_the_trial_keys_batch_is_the_studys_batch() -> None:
    key = study_key("tiny", namespace="research", uid=UID_A)
    assert study_batch(trial_key(key, 12)) == trial_batch(key) == "study-research.tiny.6f1c0a2b"


def test_a_walk_forward_windows_study_is_the_studys_key_plus_its_window_and_definition() -> None:
    """Issue 22: window studies were named `{metadata.name}-w{i}-{digest}` in walkforward.py, without
    the namespace and uid of `study_key`: two tenants' walk-forward studies of one name shared trials."""
    definition = {"backtest": {"data": {"start": "2008-01-01", "end": "2009-06-30"}}, "space": {"fast": [5, 10]}}
    key = study_key("wf", namespace="research", uid=UID_A)
    window = window_study_key(key, 3, definition)
    assert window.startswith("research.wf.6f1c0a2b-w3-")
    assert window == window_study_key(key, 3, dict(definition))  # the same definition resumes its own study
    assert window != window_study_key(key, 3, {**definition, "space": {"fast": [5, 20]}})
    assert window != window_study_key(study_key("wf", namespace="tenant-b", uid=UID_B), 3, definition)
    assert window_study_key(study_key("wf"), 0, definition).startswith("wf-w0-")  # a local run: the bare name


def test_a_long_window_study_key_still_fits_the_queue_ids() -> None:
    key = study_key("x", study_name="s" * 128, namespace="n" * 63, uid=UID_A)
    window = window_study_key(key, 12, {"a": 1})
    assert len(window) <= MAX_KEY and window.endswith("-w12-" + window.rsplit("-", 1)[1])
    assert window != window_study_key(study_key("x", study_name="s" * 127 + "t", namespace="n" * 63), 12, {"a": 1})
    assert len(trial_key(window, 99_999_999)) <= 128
