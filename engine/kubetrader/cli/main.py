"""Entry point. Subcommands are imported lazily, so `kubetrader worker` does not pay
for Optuna and `kubetrader run` does not pay for Redis.

To add a subcommand: write a click command or group in its own module under
`kubetrader.cli` and add one line to `COMMANDS`.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from kubetrader import __version__
from kubetrader.errors import EXIT_FATAL, KubetraderError
from kubetrader.startup import own_process

# name -> ("module:attribute", one-line help shown by `kubetrader --help` without importing)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("kubetrader.cli.backtest:run", "Run a custom-resource YAML file locally."),
    "backtest": ("kubetrader.cli.backtest:backtest", "Run one backtest from command-line options."),
    "data": ("kubetrader.cli.data:data", "Import, list and validate market data."),
    "symbols": ("kubetrader.cli.symbols:symbols", "Find symbols to trade (Finnhub search)."),
    "live": ("kubetrader.cli.live:live", "Trade a strategy through IB (paper or live) and stop it."),
    "optimize": ("kubetrader.cli.optimize:optimize", "Search strategy parameters with Optuna."),
    "worker": ("kubetrader.cli.worker:worker", "Run backtests from the Redis work queue."),
    "parallel": ("kubetrader.cli.parallel:parallel", "Run symbols x strategies over the work queue, ranked."),
    "monitor": ("kubetrader.cli.monitor:monitor", "Show the work queue: depth, throughput, workers, health."),
    "queue": ("kubetrader.cli.queue_cmd:queue_group", "Purge finished batches and dead letters; set retention."),
    "experiments": ("kubetrader.cli.experiments:experiments", "List, query, compare and export MLflow experiments."),
    "mlflow": ("kubetrader.cli.mlflow_cmd:mlflow_group", "Sync, migrate, index and archive the MLflow store."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        target = entry[0]
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kubetrader")
def cli() -> None:
    """Research, optimize and run Backtrader strategies, locally or on Kubernetes."""


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI; a `KubetraderError` becomes a one-line message and its exit code.

    Without `argv` (the console script, `python -m`) this process is the command, and its start-up is
    trimmed (kubetrader.startup); a caller that passes `argv` runs the CLI in its own process, untouched."""
    if argv is None:
        own_process()
    try:
        return cli.main(args=argv, prog_name="kubetrader", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_FATAL if exc.exit_code == 2 else exc.exit_code)
    except KubetraderError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
