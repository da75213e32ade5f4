"""Dashboard API latency with 10,000 results and 10,000 MLflow runs (goal: p95 < 200 ms for the lists).

SYNTHETIC LOAD DATA: one real engine run (SMA crossover on bundled ORCL 2013-2014) is the
template; the 10,000 result files are copies of it under names `synthetic-load-N` with
the strategy cycled and the headline metrics drawn at random, and the 10,000 MLflow runs
carry random metrics. They measure speed only; no number in them means anything.

Sizes: BENCH_DASHBOARD_RESULTS, BENCH_DASHBOARD_RUNS (default 10,000 each). Logging one run through
MlflowClient takes 50-250 ms here (three commits), so only the first BENCH_DASHBOARD_LOGGED runs
(default 500) are logged so; the rest are copies of them made with SQL in MLflow's own tables (runs,
tags, metrics, latest_metrics; new run ids, start times and metric values drawn again): the same
rows MLflow writes, in a minute instead of half an hour. BENCH_DASHBOARD_DATA=DIR keeps the load
data there and reuses it on the next run (same sizes). The page renders: BENCH_DASHBOARD_UI_ROUNDS
sessions (default 5); BENCH_DASHBOARD_PROFILE=DIR writes a pyinstrument profile of each render and
of one call of each API query there (where the time goes).
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = int(os.environ.get("BENCH_DASHBOARD_RESULTS", "10000"))
RUNS = int(os.environ.get("BENCH_DASHBOARD_RUNS", "10000"))
LOGGED = min(RUNS, int(os.environ.get("BENCH_DASHBOARD_LOGGED", "500")))
DATA_DIR = os.environ.get("BENCH_DASHBOARD_DATA")
REPEAT = 50
BENCH_TOKEN = "bench-token-0123456789abcdef0123"  # the API's machine token (every route needs a credential)
STRATEGIES = [
    "strategies.sma_crossover.SMACrossover",
    "strategies.rsi_momentum.RSIMomentum",
    "strategies.donchian_breakout.DonchianBreakout",
    "strategies.bollinger_reversion.BollingerReversion",
]


def write_results(directory: Path) -> float:
    from kubetrader.data import DataStore
    from kubetrader.results.store import result_paths, write_document
    from kubetrader.runner import BacktestRunner
    from kubetrader.specs import parse_resource

    os.environ.setdefault("KUBETRADER_DATA_DIR", str(directory / "data"))
    document = {
        "apiVersion": "kubetrader.io/v1alpha1",
        "kind": "Backtest",
        "metadata": {"name": "template"},
        "spec": {
            "strategy": {"path": STRATEGIES[0], "params": {"fast": 10, "slow": 30}},
            "data": {"symbols": ["ORCL"], "start": "2013-01-01", "end": "2014-12-31"},
        },
    }
    resource = parse_resource(document)
    template = BacktestRunner(resource.spec, store=DataStore(directory / "data")).run().to_document("template")  # type: ignore[arg-type]
    results_dir = directory / "results"
    rng = random.Random(1)
    started = time.perf_counter()
    for i in range(RESULTS):
        result_id = f"synthetic-load-{i:05d}"
        metrics = dict(template.metrics)
        metrics.update(sharpe_ratio=rng.gauss(0.5, 0.5), total_return=rng.gauss(0.1, 0.2), max_drawdown=-rng.random())
        copy = template.model_copy(
            update={
                "metadata": template.metadata.model_copy(
                    update={"id": result_id, "name": result_id, "strategy": STRATEGIES[i % len(STRATEGIES)]}
                ),
                "metrics": metrics,
            }
        )
        write_document(copy, result_paths(results_dir, result_id).json)  # as the engine writes (and indexes) one
    return time.perf_counter() - started


def write_runs(directory: Path) -> tuple[str, float]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    uri = f"sqlite:///{directory / 'mlflow.db'}"
    client = MlflowClient(uri)
    rng = random.Random(2)
    experiments = []
    for project in ("LoadA", "LoadB"):
        for strategy in ("SMACrossover", "RSIMomentum", "DonchianBreakout", "BollingerReversion", "Other"):
            name = f"{project}.Equities.Synthetic.{strategy}"
            tags = {"project": project, "asset_class": "Equities", "strategy_family": "Synthetic",
                    "strategy": strategy, "kubetrader.managed": "true"}  # fmt: skip
            experiments.append(client.create_experiment(name, tags=tags))
    started = time.perf_counter()
    now = int(time.time() * 1000)
    for i in range(LOGGED):
        run = client.create_run(experiments[i % len(experiments)], start_time=now - rng.randint(0, 30) * 86_400_000)
        metrics = [
            Metric(key, rng.gauss(mu, sd), now, 0)
            for key, mu, sd in (("sharpe_ratio", 0.5, 0.5), ("total_return", 0.1, 0.2), ("max_drawdown", -0.2, 0.1))
        ]
        client.log_batch(run.info.run_id, metrics=metrics, tags=[RunTag("synthetic", "load-data")])
        client.set_terminated(run.info.run_id, "FAILED" if i % 50 == 0 else "FINISHED")
    copy_runs(directory / "mlflow.db", RUNS - LOGGED)
    return uri, time.perf_counter() - started


def copy_runs(db: Path, copies: int) -> None:
    """`copies` more runs, copied in SQL from the logged ones (round robin): every row of a run in
    MLflow's tables under a new run id, its start time and metric values drawn again."""
    import sqlite3
    import uuid

    conn = sqlite3.connect(db)
    rng = random.Random(3)
    templates = [row[0] for row in conn.execute("SELECT run_uuid FROM runs ORDER BY run_uuid")]
    now = int(time.time() * 1000)
    tables = {
        table: [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
        for table in ("runs", "tags", "params", "metrics", "latest_metrics")
    }

    def column(table: str, name: str) -> str:
        if name == "run_uuid":
            return ":new"
        if table == "runs" and name in ("start_time", "end_time"):
            return ":start" if name == "start_time" else ":start + (end_time - start_time)"
        return "value * :factor" if table.endswith("metrics") and name == "value" else name

    statements = [
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(column(table, c) for c in columns)} "
        f"FROM {table} WHERE run_uuid = :old"
        for table, columns in tables.items()
    ]
    with conn:
        for i in range(copies):
            args = {"old": templates[i % len(templates)], "new": uuid.uuid4().hex,
                    "start": now - rng.randint(0, 30) * 86_400_000, "factor": rng.uniform(0.5, 1.5)}  # fmt: skip
            for statement in statements:
                conn.execute(statement, args)
    conn.close()


def load_data(directory: Path) -> str:
    """The load data in `directory` (made now, or reused when a run with the same sizes left it there)."""
    sizes, marker = f"{RESULTS} results, {RUNS} runs ({LOGGED} logged)", directory / "load-data.txt"
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    if marker.exists():
        if marker.read_text() != sizes:
            raise SystemExit(f"{directory} holds load data of other sizes ({marker.read_text()}); want {sizes}")
        print(f"synthetic load data: reused from {directory}: {sizes}")
        return uri
    directory.mkdir(parents=True, exist_ok=True)
    write_seconds = write_results(directory)
    uri, runs_seconds = write_runs(directory)
    print(f"synthetic load data: {RESULTS} result files in {write_seconds:.1f} s, {RUNS} MLflow runs "
          f"({LOGGED} logged through MlflowClient, the rest copied in SQL) in {runs_seconds:.1f} s")  # fmt: skip
    marker.write_text(sizes)
    return uri


def profile_api(directory: Path, services: Any) -> None:
    """A pyinstrument profile of one call of the slow queries' service methods, in this thread (the
    test client serves routes in threads of its own, which a profiler started here does not see)."""
    from pyinstrument import Profiler

    from kubetrader_dashboard.services.results import TradeFilter

    directory.mkdir(parents=True, exist_ok=True)
    calls: dict[str, Callable[[], object]] = {
        "api-trades": lambda: services.store.trades(TradeFilter(symbol="ORCL"), sort="-pnl_net", limit=100, offset=0),
        "api-mlflow-refresh": lambda: services.mlflow.overview(refresh=True),
    }
    for name, call in calls.items():
        call()
        profiler = Profiler(interval=0.0005)
        profiler.start()
        call()
        profiler.stop()
        (directory / f"{name}.txt").write_text(profiler.output_text(unicode=False, color=False))


def measure(call: Callable[[], object], repeat: int = REPEAT) -> tuple[float, float, float]:
    first = time.perf_counter()
    call()
    cold = (time.perf_counter() - first) * 1000
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return cold, statistics.median(times), times[int(0.95 * (len(times) - 1))]


def main() -> int:
    from fastapi.testclient import TestClient

    from kubetrader_dashboard.api.main import create_app
    from kubetrader_dashboard.settings import Settings

    kept = contextlib.nullcontext(DATA_DIR) if DATA_DIR else None
    with kept or tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        directory = Path(tmp)
        uri = load_data(directory)
        settings = Settings(results_dir=directory / "results", mlflow_tracking_uri=uri, kubernetes="off",
                            redis_url=None, optuna_storage=None, live_runner_url=None,
                            local_defaults=False, api_token=BENCH_TOKEN)  # fmt: skip
        with TestClient(create_app(settings), headers={"Authorization": f"Bearer {BENCH_TOKEN}"}) as client:
            started = time.perf_counter()
            assert client.get("/api/v1/backtests", params={"limit": 1}).json()["total"] == RESULTS
            index_seconds = time.perf_counter() - started
            print(f"first request ({RESULTS} files the engine indexed as it wrote them): {index_seconds:.2f} s "
                  f"(goal <= 2 s: {'ok' if index_seconds <= 2 else 'over'})")  # fmt: skip
            cases: list[tuple[str, Callable[[], object]]] = [
                ("GET /backtests (newest 50)", lambda: client.get("/api/v1/backtests")),
                ("GET /backtests sort=-sharpe_ratio", lambda: client.get("/api/v1/backtests?sort=-sharpe_ratio")),
                ("GET /backtests symbol+strategy", lambda: client.get(
                    "/api/v1/backtests?symbol=ORCL&strategy=strategies.rsi_momentum.RSIMomentum")),
                ("GET /backtests offset=9000", lambda: client.get("/api/v1/backtests?offset=9000")),
                ("GET /trades (all results)", lambda: client.get("/api/v1/trades?symbol=ORCL&sort=-pnl_net")),
                ("GET /rankings", lambda: client.get("/api/v1/rankings")),
                ("GET /pages/backtests (the Backtests page)", lambda: client.get("/api/v1/pages/backtests")),
                ("GET /pages/performance (the Performance page)", lambda: client.get("/api/v1/pages/performance")),
                ("GET /mlflow/overview (cached)", lambda: client.get("/api/v1/mlflow/overview")),
                ("GET /mlflow/overview project=LoadA", lambda: client.get("/api/v1/mlflow/overview?project=LoadA")),
                ("GET /mlflow/runs status=FAILED", lambda: client.get("/api/v1/mlflow/runs?status=FAILED")),
            ]  # fmt: skip
            if PROFILE_DIR:
                profile_api(Path(PROFILE_DIR), client.app.state.services)  # type: ignore[attr-defined]
            rows = [(label, *measure(call)) for label, call in cases]
            # A fresh snapshot reads every run: seconds at 10,000 runs, so only a few repeats.
            refresh = measure(lambda: client.get("/api/v1/mlflow/overview?refresh=true"), repeat=5)
            rows.append(("GET /mlflow/overview refresh (new snapshot)", *refresh))
        renders = ui_renders(create_app(settings))
    print(f"\n{'query':48} {'cold ms':>9} {'p50 ms':>9} {'p95 ms':>9}  goal p95<200 (lists)")
    for label, cold, p50, p95 in rows:
        print(f"{label:48} {cold:9.1f} {p50:9.1f} {p95:9.1f}  {'ok' if p95 < 200 else 'over'}")
    print(f"\n{'dashboard page (Streamlit script, AppTest)':48} {'p50 ms':>9} {'max ms':>9} {'API calls':>9} "
          f"{'goal ms':>9}  ({UI_ROUNDS} sessions, caches emptied)")  # fmt: skip
    for label, p50, slowest, api_calls, goal in renders:
        print(f"{label:48} {p50:9.0f} {slowest:9.0f} {api_calls:9d} {goal:9.0f}  {'ok' if p50 < goal else 'over'}")
    return 0


UI_ROUNDS = int(os.environ.get("BENCH_DASHBOARD_UI_ROUNDS", "5"))
PROFILE_DIR = os.environ.get("BENCH_DASHBOARD_PROFILE")  # a directory: a pyinstrument profile per page render
PAGES = ("Backtests", "Performance", "Dashboard")


class _CountRequests:
    """ASGI middleware counting the API requests (by path) a page render makes."""

    def __init__(self, app: Any) -> None:
        self.app, self.paths = app, list[str]()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


def _profile_script_runs(directory: Path, label: Callable[[], str | None]) -> None:
    """Profile each AppTest script run (it runs in a thread of its own, which pyinstrument follows
    only from inside) into `directory`/<label>.txt, for the runs `label()` names."""
    from pyinstrument import Profiler
    from streamlit.testing.v1 import local_script_runner

    directory.mkdir(parents=True, exist_ok=True)
    run = local_script_runner.LocalScriptRunner._run_script_thread

    def profiled(self: Any) -> None:
        name = label()
        if name is None:
            run(self)
            return
        profiler = Profiler(interval=0.0005)
        profiler.start()
        try:
            run(self)
        finally:
            profiler.stop()
            (directory / f"{name}.txt").write_text(profiler.output_text(unicode=False, color=False))

    local_script_runner.LocalScriptRunner._run_script_thread = profiled  # type: ignore[method-assign]


def ui_renders(app: Any) -> list[tuple[str, float, float, int, float]]:
    """First render of the app and the page switches, timed as Streamlit runs the script (AppTest)
    against the API on a loopback port: what a user waits for before the browser paints (which adds
    to it). `UI_ROUNDS` new sessions, each on emptied caches; the median and the slowest round, and
    the API calls each render made."""
    import threading

    import streamlit as st
    import uvicorn
    from streamlit.testing.v1 import AppTest

    counted = _CountRequests(app)
    config = uvicorn.Config(counted, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    os.environ["FASTAPI_BACKEND_URL"] = f"http://127.0.0.1:{port}"
    profiling: dict[str, str | None] = {"label": None}
    if PROFILE_DIR:
        _profile_script_runs(Path(PROFILE_DIR), lambda: profiling["label"])
    times: dict[str, list[float]] = {label: [] for label in ("first render (Dashboard page)", *PAGES)}
    calls: dict[str, int] = {}
    try:
        script = str(ROOT / "dashboard" / "kubetrader_dashboard" / "ui" / "app.py")
        from kubetrader_dashboard.ui.signin import SESSION_KEY

        warm = AppTest.from_file(script, default_timeout=120)
        warm.session_state[SESSION_KEY] = BENCH_TOKEN  # the app signed in (as the machine, for the bench)
        warm.run()
        for label in PAGES:  # imports warmed (plotly's figure classes, ...) as in a server that has had a visitor
            warm.radio(key="page").set_value(label).run()
        for round_no in range(UI_ROUNDS):
            # A new session on a running server: AppTest's first run of an instance scans every installed
            # package for Streamlit components (seconds; a server does it once at start-up), so that run
            # shows the sign-in form, and the measured one is the session's first signed-in render, with
            # the app's caches emptied (nothing fetched before counts).
            at = AppTest.from_file(script, default_timeout=120)
            at.run()
            st.cache_data.clear()
            at.session_state[SESSION_KEY] = BENCH_TOKEN
            for label, measured in times.items():  # the first render, then each switch
                profiling["label"] = f"{label.split(' ')[0].lower()}-{round_no}"
                counted.paths.clear()
                started = time.perf_counter()
                if label in PAGES:
                    at.radio(key="page").set_value(label)
                at.run()
                measured.append((time.perf_counter() - started) * 1000)
                profiling["label"] = None
                calls[label] = len(counted.paths)
                assert not at.exception, at.exception
                assert not at.error, [e.value for e in at.error]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    rows = []
    for label, values in times.items():
        goal = 1500.0 if label.startswith("first") else 300.0
        name = label if label.startswith("first") else f"switch to {label}"
        rows.append((name, statistics.median(values), max(values), calls[label], goal))
    return rows


if __name__ == "__main__":
    sys.exit(main())
