"""The key of a study's state (kubetrader.optimize.naming): one function for the driver, the operator and
the walk-forward windows, so that two tenants' studies of the same name never share state (issue 21)."""

from __future__ import annotations

from kubetrader.optimize.naming import MAX_KEY, study_key, trial_batch
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
