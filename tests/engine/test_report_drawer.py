"""The report drawn in the helper process (kubetrader.results.drawer) is the report drawn in-process.

`kubetrader run` draws its plot and tearsheet in a forked helper while it runs the backtest
(bench/bench_cli.py times it); these tests hold it to the same files, the same errors, and a
fallback to drawing in-process when the helper is gone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubetrader.pipeline import write_result
from kubetrader.results.drawer import ReportDrawer
from kubetrader.results.store import result_paths


def _files(paths: Any) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (paths.plot, paths.tearsheet, paths.equity_csv, paths.trades_csv)}


def test_helper_draws_the_same_files_as_in_process(sma_orcl_result: Any, tmp_path: Path) -> None:
    here = result_paths(tmp_path / "here", "sma")
    aside = result_paths(tmp_path / "aside", "sma")
    in_process = write_result(sma_orcl_result, name="sma", paths=here)
    with ReportDrawer() as drawer:
        assert drawer._process is not None and drawer._process.is_alive()  # a helper is really used
        helper_pid = drawer._process.pid
        drawn = write_result(sma_orcl_result, name="sma", paths=aside, drawer=drawer)
        assert drawer._process is not None and drawer._process.pid == helper_pid  # ...and did not fall back
        helper = drawer._process
    assert helper.exitcode == 0  # it ended on its pipe's end, not killed after close()'s timeout
    assert drawn.artifacts == in_process.artifacts
    assert {"plot", "tearsheet"} <= set(drawn.artifacts)
    assert _files(aside) == _files(here)


def test_drawing_error_is_raised_in_the_parent_and_the_helper_serves_on(sma_orcl_result: Any, tmp_path: Path) -> None:
    paths = result_paths(tmp_path / "out", "sma")
    document = sma_orcl_result.to_document("sma")
    paths.plot.mkdir(parents=True)  # a directory where the PNG goes: the helper's write fails
    with ReportDrawer() as drawer:
        drawer.draw_begin(document, sma_orcl_result, paths, "title")
        with pytest.raises(OSError) as raised:
            drawer.draw_end()
        assert any("report helper process" in note for note in getattr(raised.value, "__notes__", []))
        paths.plot.rmdir()
        drawer.draw_begin(document, sma_orcl_result, paths, "title")  # the same helper draws the next one
        drawer.draw_end()
        assert drawer._process is not None
    assert paths.plot.stat().st_size > 0 and paths.tearsheet.stat().st_size > 0


def test_helper_killed_falls_back_to_drawing_here(sma_orcl_result: Any, tmp_path: Path) -> None:
    here = result_paths(tmp_path / "here", "sma")
    aside = result_paths(tmp_path / "aside", "sma")
    write_result(sma_orcl_result, name="sma", paths=here)
    with ReportDrawer() as drawer:
        assert drawer._process is not None
        drawer._process.kill()
        drawer._process.join()
        write_result(sma_orcl_result, name="sma", paths=aside, drawer=drawer)
        assert drawer._process is None  # it noticed, and drew in this process
    assert _files(aside) == _files(here)
