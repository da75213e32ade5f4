"""A helper process that draws a run's report (PNG plot and HTML tearsheet) beside the run.

Why: importing matplotlib and drawing the plot are about a third of `kubetrader run`'s whole
process (bench/bench_cli.py; `python -X importtime`: `matplotlib.figure` alone builds a docstring
for every Artist's `set()`). The `ReportDrawer` forks before the backtest starts, once pandas and
Backtrader are imported (so nothing is imported twice), and the child imports matplotlib while the
parent runs; the parent then hands it the finished result and writes its CSVs while the child draws.
On one core this costs nothing extra; on two, the chart's cost leaves the critical path.

The files are the same either way: the child calls the same `write_report` on the same (pickled)
inputs. A drawing error comes back to the parent and is raised there, as if drawn in-process; if the
helper cannot be used (no `fork` on this platform, the child died), the parent draws itself.

Only single-threaded callers use it (the CLI): forking a process that runs threads (the API server)
can leave a lock held in the child.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import traceback
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from kubetrader.results.schema import ResultDocument
    from kubetrader.results.store import ResultPaths
    from kubetrader.runner import BacktestResult

log = logging.getLogger(__name__)


def _serve(conn: Connection, parent_end: Connection) -> None:
    """The child: import the charting code now, then draw each job sent until the pipe closes."""
    parent_end.close()  # the fork's copy of the parent's end: open here, it would keep the pipe from ever closing
    try:
        from kubetrader.results.report import warm_up, write_report

        warm_up()
        while True:
            try:
                job = conn.recv()
            except EOFError:  # the parent closed the pipe, or exited
                return
            document, result, paths, title = job
            try:
                write_report(document, result, paths, title=title)
            except Exception as exc:
                conn.send(_portable(exc))
            else:
                conn.send(None)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent reports it
        return


def _portable(exc: BaseException) -> BaseException:
    """`exc` if it survives pickling (with the child's traceback as a note), else a RuntimeError saying it."""
    exc.add_note("in the report helper process:\n" + "".join(traceback.format_exception(exc)))
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"drawing the report failed: {exc!r}")
    return exc


class ReportDrawer:
    """Draws reports in a forked helper; `draw_begin` hands a job over, `draw_end` waits for it."""

    def __init__(self) -> None:
        self._conn: Connection | None = None
        self._process: BaseProcess | None = None
        self._pending: tuple[ResultDocument, BacktestResult, ResultPaths, str] | None = None
        if "fork" not in multiprocessing.get_all_start_methods():
            return
        context = multiprocessing.get_context("fork")
        parent, child = context.Pipe()
        process = context.Process(target=_serve, args=(child, parent), name="kubetrader-report", daemon=True)
        try:
            process.start()
        except OSError as exc:  # no memory or process slots for a fork: draw in this process
            log.debug("report helper not started: %s", exc)
            parent.close()
            return
        finally:
            child.close()
        self._conn, self._process = parent, process

    def draw_begin(self, document: ResultDocument, result: BacktestResult, paths: ResultPaths, title: str) -> None:
        """Start drawing (in the helper, or nothing yet when there is none); call `draw_end` after."""
        self._pending = (document, result, paths, title)
        if self._conn is None:
            return
        try:
            self._conn.send(self._pending)
        except (OSError, pickle.PicklingError) as exc:
            log.debug("report helper unusable (%s); drawing in this process", exc)
            self.close()

    def draw_end(self) -> None:
        """Wait for the report started by `draw_begin`; raises what drawing raised."""
        pending, self._pending = self._pending, None
        if pending is None:
            raise RuntimeError("draw_end without draw_begin")
        if self._conn is not None:
            try:
                error = self._conn.recv()
            except (OSError, EOFError) as exc:  # the helper died (killed, out of memory): draw here instead
                log.debug("report helper gone (%s); drawing in this process", exc)
                self.close()
            else:
                if error is not None:
                    raise error
                return
        from kubetrader.results.report import write_report

        document, result, paths, title = pending
        write_report(document, result, paths, title=title)

    def close(self) -> None:
        """Stop the helper (it exits when its pipe closes)."""
        conn, process = self._conn, self._process
        self._conn = self._process = None
        if conn is not None:
            conn.close()
        if process is not None:
            process.join(timeout=5)  # it exits at once on the pipe's end
            if process.is_alive():
                log.warning("report helper %s did not exit with its pipe closed; killed", process.pid)
                process.kill()
                process.join()

    def __enter__(self) -> ReportDrawer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
