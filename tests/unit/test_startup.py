"""kubetrader.startup: the start-up pause of the garbage collector and the BLAS threads' idle setting, in
this process (their effect on a real `kubetrader run` process: tests/engine/test_cli_imports.py)."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest

from kubetrader import startup


@pytest.fixture
def collector() -> Iterator[None]:
    """Whatever a test does to the collector and the module's state is undone after it."""
    enabled = gc.isenabled()
    try:
        yield
    finally:
        startup.STATE.own_process = False
        startup.STATE.paused = False
        gc.unfreeze()  # what a resume froze goes back to the oldest generation, collectable again
        if enabled:
            gc.enable()
        else:
            gc.disable()


def test_the_collector_is_left_alone_unless_this_process_is_the_command(collector: None) -> None:
    """`main(argv)` in a program's or a test's process never turns its collector off."""
    gc.enable()
    startup.pause_gc()
    assert gc.isenabled()
    startup.resume_gc()
    assert gc.get_freeze_count() == 0


def test_the_start_up_pause_ends_with_what_it_built_frozen_and_the_collector_on(
    collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(startup.BLAS_IDLE_ENV, raising=False)
    freezes: list[int] = []
    freeze = gc.freeze

    def counted_freeze() -> None:
        freezes.append(1)
        freeze()

    # Counted, not compared by gc.get_freeze_count(): frozen objects still die when their last
    # reference goes (another thread of the test process), so the count can fall between two reads.
    monkeypatch.setattr(gc, "freeze", counted_freeze)
    gc.enable()
    startup.own_process()
    startup.pause_gc()
    assert not gc.isenabled()
    startup.resume_gc()
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0 and len(freezes) == 1
    startup.resume_gc()  # a second resume (the command's way out after the runner's) changes nothing
    assert len(freezes) == 1 and gc.isenabled()


def test_a_collector_the_caller_turned_off_stays_off(collector: None) -> None:
    startup.STATE.own_process = True
    gc.disable()
    startup.pause_gc()
    startup.resume_gc()
    assert not gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_a_paused_command_resumes_the_collector_when_it_fails(collector: None) -> None:
    startup.STATE.own_process = True
    gc.enable()

    @startup.gc_paused
    def command() -> None:
        assert not gc.isenabled()
        raise RuntimeError("bad spec")

    with pytest.raises(RuntimeError, match="bad spec"):
        command()
    assert gc.isenabled()


def test_the_blas_setting_is_a_default_the_user_can_override(collector: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(startup.BLAS_IDLE_ENV, raising=False)
    startup.own_process()
    assert startup.BLAS_IDLE_ENV in os.environ
    assert os.environ[startup.BLAS_IDLE_ENV] == startup.BLAS_IDLE_DEFAULT
    monkeypatch.setenv(startup.BLAS_IDLE_ENV, "20")
    startup.own_process()
    assert os.environ[startup.BLAS_IDLE_ENV] == "20"
