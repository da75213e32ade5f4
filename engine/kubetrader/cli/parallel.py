"""`kubetrader parallel`: a symbols x strategies campaign over the work queue, ranked by Sharpe.

Without `--redis` it starts a Redis (AOF on) and local worker processes, so a
laptop runs the same distributed path as the cluster; with `--redis` it only
enqueues and waits, for the cluster's workers (add `--workers N` to help locally).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kubetrader.cli.options import backtest_spec_from_options, greedy_option, split_words
from kubetrader.queue.defaults import DEFAULT_PREFIX

if TYPE_CHECKING:
    from kubetrader.queue.campaign import CampaignReport


@click.command()
@greedy_option("--symbols", "symbols", required=True, help="Symbols: --symbols ORCL NVDA YHOO GOOG.")
@greedy_option("--strategies", "strategies", required=True, help="Strategy import paths, one cell per symbol each.")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default="2009-01-01", show_default=True)
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default="2013-12-31", show_default=True)
@click.option("--timeframe", default="1d", show_default=True)
@click.option("--cash", type=float, default=100_000.0, show_default=True)
@click.option("--commission", default="ib-standard", show_default=True, help="ib-standard, ib-pro, none.")
@click.option("--slippage-bps", type=float, default=5.0, show_default=True)
@click.option("--priority", type=int, default=0, show_default=True, help="Higher runs before other batches.")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="Local workers [CPUs; 0 with --redis].")
@click.option("--redis", "redis_url", envvar="KUBETRADER_REDIS_URL", default=None, help="Use this Redis.")
@click.option("--prefix", default=DEFAULT_PREFIX, show_default=True, help="Queue key prefix.")
@click.option("--batch", default=None, help="Batch id; the same id resumes a campaign (finished cells are kept).")
@click.option("--name", default="parallel", show_default=True, help="Result name of the cells' result files.")
@click.option("--max-attempts", type=click.IntRange(1, 100), default=3, show_default=True)
@click.option("--retry-failed", is_flag=True, help="With --batch of an earlier run: run its dead-lettered cells again.")
@click.option(
    "--artifacts",
    type=click.Choice(["compact", "full"]),
    default="compact",
    show_default=True,
    help="compact: one Parquet file per batch (metrics, equity) plus full files for the --top-k best; "
    "full: result files for every cell (about 0.5 MB each).",
)
@click.option("--top-k", type=click.IntRange(min=0), default=10, show_default=True, help="Full files for the K best.")
@click.option("--report", is_flag=True, help="Also draw each cell's plot and HTML tearsheet.")
@click.option(
    "--timeout", type=float, default=None, help="Give up after this many seconds (unfinished cells are cancelled)."
)
@click.option(
    "--task-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Execution deadline of one cell; past it the cell is stopped and dead-lettered [300 s + 5 ms per bar].",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    default=Path("results/parallel_results.csv"),
    show_default=True,
    help="The CSV; the JSON with batch metadata goes beside it.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def parallel(
    symbols: tuple[str, ...],
    strategies: tuple[str, ...],
    start: dt.datetime,
    end: dt.datetime,
    timeframe: str,
    cash: float,
    commission: str,
    slippage_bps: float,
    priority: int,
    workers: int | None,
    redis_url: str | None,
    prefix: str,
    batch: str | None,
    name: str,
    max_attempts: int,
    retry_failed: bool,
    artifacts: str,
    top_k: int,
    report: bool,
    timeout: float | None,
    task_timeout: float | None,
    output: Path,
    no_progress: bool,
) -> None:
    """Run every strategy on every symbol in parallel and rank them by Sharpe."""
    if workers is None:
        workers = 0 if redis_url else os.cpu_count() or 1
    with contextlib.ExitStack() as stack:
        local_url = None
        if redis_url is None:
            # Our own Redis and workers before anything else: a worker spends most of its start-up importing
            # the engine, which so overlaps with this process's own imports and preparation (0.3-0.5 s).
            from kubetrader.queue.local import local_queue

            local_url = stack.enter_context(local_queue(workers, prefix=prefix, output_dir=output.parent))
        result = _run_campaign(
            symbols, strategies, start=start, end=end, timeframe=timeframe, cash=cash, commission=commission,
            slippage_bps=slippage_bps, name=name, batch=batch, workers=workers, redis_url=redis_url,
            local_url=local_url, prefix=prefix, priority=priority, max_attempts=max_attempts,
            retry_failed=retry_failed, artifacts=artifacts, top_k=top_k, report=report, output_dir=output.parent,
            timeout=timeout, task_timeout=task_timeout, show_progress=not no_progress,
        )  # fmt: skip
    _print_report(result, output)


def _run_campaign(
    symbols: tuple[str, ...],
    strategies: tuple[str, ...],
    *,
    start: dt.datetime,
    end: dt.datetime,
    timeframe: str,
    cash: float,
    commission: str,
    slippage_bps: float,
    name: str,
    batch: str | None,
    **options: Any,
) -> CampaignReport:
    """The campaign's spec from the command's options, run over the queue."""
    from kubetrader.specs import MatrixSpec

    paths = split_words(strategies)
    base = backtest_spec_from_options(
        strategy=paths[0],
        symbols=symbols,
        start=start,
        end=end,
        timeframe=timeframe,
        cash=cash,
        commission=commission,
        slippage_bps=slippage_bps,
    )
    spec = base.model_copy(update={"matrix": MatrixSpec(symbols=list(base.data.symbols), strategies=paths)})
    batch = batch or f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    return run_with_progress(spec, name=name, batch=batch, **options)


def _print_report(result: CampaignReport, output: Path) -> None:
    """The CSV and JSON, and the summary on the terminal; exit 1 when a cell failed or was cancelled."""
    from kubetrader.queue.campaign import headline, write_report

    csv_path, json_path = write_report(result, output)
    avg = f"{result.avg_seconds_per_backtest:.3f} s" if result.avg_seconds_per_backtest is not None else "-"
    click.echo(
        f"{result.succeeded} succeeded, {result.failed} failed, {result.cancelled} cancelled "
        f"in {result.execution_seconds:.1f} s (average {avg} per backtest)"
    )
    for rank, row in enumerate(result.ranking[:10], start=1):
        click.echo(f"{rank:>3}. {headline(row)}")
    for row in result.failures:
        click.echo(f"  {row.status}: {row.symbols} {row.strategy} {row.params}: {row.error}", err=True)
    click.echo(
        f"wrote {csv_path} and {json_path}" + (f"; every cell in {result.batch_file}" if result.batch_file else "")
    )
    if result.failed or result.cancelled:
        sys.exit(1)


def run_with_progress(
    spec: Any, *, name: str, batch: str, workers: int, redis_url: str | None, show_progress: bool = True, **options: Any
) -> CampaignReport:
    """`run_campaign` with a tqdm bar and a line saying what was enqueued (shared with `run -f`)."""
    from tqdm import tqdm

    from kubetrader.queue.campaign import run_campaign
    from kubetrader.queue.stats import BatchStats

    bar = tqdm(total=0, unit="backtest", disable=not show_progress)

    def on_start(cells: int, added: int, url: str) -> None:
        click.echo(f"batch {batch}: {cells} backtests ({added} new), {workers} local workers, redis {url}")
        bar.reset(total=cells)

    def on_progress(stats: BatchStats) -> None:
        bar.update(stats.finished - bar.n)
        bar.set_postfix(running=stats.running, failed=stats.failed)

    try:
        return run_campaign(
            spec,
            name=name,
            batch=batch,
            workers=workers,
            redis_url=redis_url,
            on_start=on_start,
            on_progress=on_progress,
            **options,
        )
    finally:
        bar.close()
