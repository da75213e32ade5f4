"""Time to log one backtest (40+ metrics, params, tags and 6 artifacts) to MLflow.

Targets: local SQLite store, and a real `mlflow server` on loopback backed by
PostgreSQL (pgserver), started as the test fixture starts it. Goal: < 150 ms per run
to the server, and < 10 % of a 5-year daily backtest (~0.2 s).

BENCH_TRACKING_BASELINE=1 adds a server started with MLflow's defaults (job runner and
its consumers, no bytecode cache), the one the first version of this benchmark used.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubetrader.tracking import record_backtest  # noqa: E402
from kubetrader.tracking.maintenance import migrate  # noqa: E402
from tests.fixtures.mlflow import MlflowServer  # noqa: E402
from tests.tracking.documents import write_backtest  # noqa: E402

N = int(os.environ.get("BENCH_TRACKING_RUNS", "15"))
BASELINE = os.environ.get("BENCH_TRACKING_BASELINE") == "1"
# A loaded machine can exceed the fail-fast 5 s default; the bench measures speed, not fallbacks.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")


def _time_runs(uri: str, work: Path, label: str) -> list[float]:
    times = []
    for i in range(N + 1):
        document, path = write_backtest(work / label, f"bench-{label.replace(' ', '-')}-{i}")
        started = time.perf_counter()
        state, _ = record_backtest(document, path, tracking_uri=uri)
        elapsed = time.perf_counter() - started
        if state != "logged":
            raise RuntimeError(f"{label}: run {i} {state}")
        if i:  # the first pays for imports and experiment creation
            times.append(elapsed)
    return times


def _server_rows(work: Path) -> list[tuple[str, float, list[float]]]:
    import pgserver

    pg = pgserver.get_server(work / "pg", cleanup_mode="stop")
    rows = []
    try:
        pg.psql('CREATE DATABASE "template";')
        migrate(pg.get_uri("template"))  # a bare postgresql:// URL works too
        variants: list[tuple[str, dict[str, str] | None]] = [("server + PostgreSQL", None)]
        if BASELINE:
            defaults = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
            variants.insert(0, ("server, MLflow defaults", defaults))
        for number, (label, env) in enumerate(variants):
            pg.psql(f'CREATE DATABASE "mlflow{number}" TEMPLATE "template";')
            backend = pg.get_uri(f"mlflow{number}")
            started = time.perf_counter()
            server = MlflowServer(backend, work / f"server{number}", env=env)
            try:
                url = server.wait_healthy(timeout=300)
                start_seconds = time.perf_counter() - started
                rows.append((label, start_seconds, _time_runs(url, work, label)))
            finally:
                server.stop()
    finally:
        pg.cleanup()
    return rows


def main() -> None:
    rows: list[tuple[str, float | None, list[float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # pgserver runs PostgreSQL as an unprivileged user when we are root
        local = f"sqlite:///{work / 'local' / 'mlflow.db'}"
        (work / "local").mkdir()
        migrate(local)
        rows.append(("local SQLite", None, _time_runs(local, work, "local")))
        rows.extend(_server_rows(work))
    print(f"{'target':<24} {'start s':>8} {'runs':>5} {'median ms':>10} {'p90 ms':>8} {'vs 0.2 s backtest':>18}")
    for label, start_seconds, times in rows:
        median = statistics.median(times)
        p90 = sorted(times)[int(0.9 * (len(times) - 1))]
        start = f"{start_seconds:.1f}" if start_seconds is not None else "-"
        print(f"{label:<24} {start:>8} {len(times):>5} {median * 1000:>10.1f} {p90 * 1000:>8.1f} {median / 0.2:>17.0%}")


if __name__ == "__main__":
    main()
