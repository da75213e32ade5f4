"""Time to log one backtest (40+ metrics, params, tags and 6 artifacts) to MLflow.

Targets: local SQLite store, and a real `mlflow server` on loopback backed by
PostgreSQL (pgserver). Goal: < 150 ms per run to the server, and < 10 % of a 5-year
daily backtest (~0.2 s).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubetrader.tracking import record_backtest  # noqa: E402
from kubetrader.tracking.maintenance import migrate  # noqa: E402
from tests.helpers import free_port, wait_until  # noqa: E402
from tests.tracking.documents import write_backtest  # noqa: E402

N = int(os.environ.get("BENCH_TRACKING_RUNS", "15"))
# A loaded machine can exceed the fail-fast 5 s default; the bench measures speed, not fallbacks.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")


def _time_runs(uri: str, work: Path, label: str) -> list[float]:
    times = []
    for i in range(N + 1):
        document, path = write_backtest(work / label, f"bench-{label}-{i}")
        started = time.perf_counter()
        state, _ = record_backtest(document, path, tracking_uri=uri)
        elapsed = time.perf_counter() - started
        if state != "logged":
            raise RuntimeError(f"{label}: run {i} {state}")
        if i:  # the first pays for imports and experiment creation
            times.append(elapsed)
    return times


def _server(work: Path) -> tuple[subprocess.Popen[bytes], str, object]:
    import pgserver

    pg = pgserver.get_server(work / "pg", cleanup_mode="stop")
    pg.psql('CREATE DATABASE "mlflow";')
    backend = pg.get_uri("mlflow").replace("postgresql://", "postgresql+psycopg2://", 1)
    migrate(backend)
    port = free_port()
    command = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", backend]
    command += ["--artifacts-destination", str(work / "art"), "--port", str(port), "--workers", "1"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: urllib.request.urlopen(f"{url}/health", timeout=2).status == 200, timeout=180)
    return process, url, pg


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # pgserver runs PostgreSQL as an unprivileged user when we are root
        local = f"sqlite:///{work / 'local' / 'mlflow.db'}"
        (work / "local").mkdir()
        migrate(local)
        rows.append(("local SQLite", _time_runs(local, work, "local")))
        process, url, pg = _server(work)
        try:
            rows.append(("server + PostgreSQL", _time_runs(url, work, "server")))
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
            pg.cleanup()  # type: ignore[attr-defined]
    print(f"{'target':<22} {'runs':>5} {'median ms':>10} {'p90 ms':>8} {'vs 0.2 s backtest':>18}")
    for label, times in rows:
        median = statistics.median(times)
        p90 = sorted(times)[int(0.9 * (len(times) - 1))]
        print(f"{label:<22} {len(times):>5} {median * 1000:>10.1f} {p90 * 1000:>8.1f} {median / 0.2:>17.0%}")


if __name__ == "__main__":
    main()
