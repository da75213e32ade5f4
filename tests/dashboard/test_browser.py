"""One real-browser test after a demo-like run (the CLI, then the API with no configuration and
`streamlit run`, on loopback ports): every page opened in
headless Chromium (Debian's, driven over the DevTools protocol), a screenshot per tab.

Screenshots land in the test's tmp_path (printed on failure) so a person can look at them.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import ROOT, free_port, wait_until

# The demo-like run (a backtest and a 4-trial study through the CLI) takes a minute or two on 2 cores.
pytestmark = [pytest.mark.xdist_group("dashboard"), pytest.mark.slow, pytest.mark.timeout(1500)]

APP = ROOT / "dashboard" / "kubetrader_dashboard" / "ui" / "app.py"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1800",
]


class DevTools:
    """The few DevTools-protocol calls the test needs, over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self._ws = websocket.create_connection(ws_url, timeout=90, suppress_origin=True)
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        self._ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._ws.recv())
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def click(self, element_js: str) -> None:
        """A real mouse click at the element's centre (the tabs are react-aria pressables, which
        listen to pointer events rather than to a scripted `.click()`)."""
        box = self.evaluate(
            f"(() => {{ const r = ({element_js}).getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        x, y = box
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def type_into(self, element_js: str, text: str) -> None:
        """Focus an input and type `text` into it as keyboard input (React sees real input events)."""
        self.evaluate(f"({element_js}).focus()")
        self.call("Input.insertText", text=text)

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        self._ws.close()


@dataclass(frozen=True)
class Demo:
    """A demo-like run in a directory of its own, and the API serving it with no configuration."""

    root: Path
    api_url: str
    backtest: Any  # the result document of the example Backtest
    tearsheet: str
    trials: int
    mlflow_runs: int


def _clean_env(home: Path) -> dict[str, str]:
    """The environment of a new user: none of our variables, a HOME of its own (no kubeconfig)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBETRADER_", "MLFLOW_", "FASTAPI_"))}
    env.pop("KUBECONFIG", None)
    env["HOME"] = str(home)
    return env


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """What `make demo` does, smaller: the example Backtest (tracked) and a 4-trial study, by the CLI."""
    import yaml

    from kubetrader.results.schema import ResultDocument

    root = tmp_path / "demo"
    root.mkdir()
    env = _clean_env(tmp_path)
    backtest = yaml.safe_load((ROOT / "examples" / "backtest-sma.yaml").read_text())
    backtest["spec"]["tracking"]["enabled"] = True
    study = yaml.safe_load((ROOT / "examples" / "study-demo.yaml").read_text())
    study["spec"].update(trials=4, parallelism=1)
    study["spec"]["backtest"]["data"].update(start="2012-01-01", end="2014-12-31")
    study["spec"]["sampler"]["startupTrials"] = 4
    cli = str(Path(sys.executable).parent / "kubetrader")
    for name, document in (("study.yaml", study), ("backtest.yaml", backtest)):
        (root / name).write_text(yaml.safe_dump(document))
        done = subprocess.run([cli, "run", "-f", name, "--output", "results"], cwd=root, env=env, check=False,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    # `kubetrader run` logs to MLflow after it exits (a detached `kubetrader mlflow sync`): the
    # demo's runs are all in MLflow once its pending markers are gone.
    from kubetrader.tracking.record import pending_markers

    wait_until(lambda: not pending_markers(root / "results"), timeout=240, what="the background MLflow sync")
    (result,) = [p for p in (root / "results" / "backtests").glob("sma-orcl-*.json")]
    document = ResultDocument.model_validate_json(result.read_bytes())
    assert document.metadata.tracking == "logged", document.metadata
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'data' / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = len(client.search_runs(experiments, max_results=1000))
    port = free_port()
    log = (tmp_path / "api.log").open("w")
    api = subprocess.Popen([sys.executable, "-m", "kubetrader_dashboard.api", "--port", str(port)], cwd=root, env=env,
                           stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(url + "/api/v1/healthz").status_code == 200,
            timeout=240,
            what="the API",
            retry_on=(httpx.TransportError,),  # connection refused until it listens
        )
        yield Demo(root, url, document, (result.parent / document.artifacts["tearsheet"]).read_text(), 4, runs)
    finally:
        api.terminate()
        api.wait(timeout=20)
        log.close()


@pytest.fixture
def streamlit_url(demo: Demo, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**_clean_env(tmp_path), "FASTAPI_BACKEND_URL": demo.api_url}
    command = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer",
    ]  # fmt: skip
    log = (tmp_path / "streamlit.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(url + "/_stcore/health").status_code == 200,
            timeout=240,
            what="streamlit",
            retry_on=(httpx.TransportError,),  # connection refused until it listens
        )
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (make browser-deps installs it)"
    port = free_port()
    process = subprocess.Popen(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            f"--remote-debugging-port={port}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        targets = wait_until(
            lambda: [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page"],
            timeout=30,
            what="chromium's DevTools endpoint",
            retry_on=(httpx.TransportError,),
        )
        tools = DevTools(targets[0]["webSocketDebuggerUrl"])
        tools.call("Page.enable")
        tools.call("Emulation.setDeviceMetricsOverride", width=1400, height=1800, deviceScaleFactor=1, mobile=False)
        yield tools
        tools.close()
    finally:
        process.terminate()
        process.wait(timeout=20)


IDLE = (
    "!document.querySelector('[data-testid=\"stStatusWidget\"]')"
    " && !document.querySelector('[data-testid=\"stSkeleton\"]')"
)
PAGES = '[...document.querySelectorAll(\'[data-testid="stRadio"] [role="radiogroup"] label\')]'
MAIN = "document.querySelector('[data-testid=\"stMain\"]')"


def _open(browser: DevTools, index: int, label: str, ready: str, wanted: list[str]) -> str:
    """Click page `index`, wait until the app is idle, `ready` (a JS condition on `text`) holds and
    every string of `wanted` is shown; fail naming the missing strings after the deadline.

    Streamlit renders a page's elements one after another (a table below the charts can arrive
    after the charts that `ready` waits for), so "idle and ready" alone raced the later elements.

    Returns the page's text, each metric card as `label: value` on a line of its own first."""
    browser.click(f"{PAGES}[{index}]")
    state_js = f"""(() => {{
        const main = {MAIN};
        if (!main || !({IDLE})) return null;
        const checked = {PAGES}[{index}].querySelector('input');
        if (checked && !checked.checked) return null;
        const cards = [...main.querySelectorAll('[data-testid="stMetric"]')].map(m =>
            m.querySelector('[data-testid="stMetricLabel"]').innerText.trim() + ': ' +
            m.querySelector('[data-testid="stMetricValue"]').innerText.trim());
        const text = cards.join('\\n') + '\\n' + main.innerText;
        if (document.querySelectorAll('[data-testid="stException"]').length) return "EXCEPTION " + text;
        return ({ready}) ? text : null;
    }})()"""
    last: list[str] = [""]

    def shown() -> str | None:
        text = browser.evaluate(state_js)
        if text is None:
            return None
        last[0] = str(text)
        if text.startswith("EXCEPTION"):
            return str(text)
        return str(text) if all(w in text for w in wanted) else None

    try:
        text = wait_until(shown, timeout=120, interval=0.5, what=f"page {label!r}")
    except TimeoutError:
        missing = [w for w in wanted if w not in last[0]]
        raise AssertionError(f"{label}: {missing} not shown within 120 s; last text:\n{last[0][:4000]}") from None
    assert not text.startswith("EXCEPTION"), text[:3000]
    return text


def _sign_in_as_local_admin(browser: DevTools, demo: Demo) -> None:
    """What a user of `make dashboard` does first: the sign-in form, user `admin` and the password the
    API created for the demo's directory (data/dashboard/admin-password, which `make dashboard` prints)."""
    password = (demo.root / "data" / "dashboard" / "admin-password").read_text().strip()
    field = "document.querySelector('input[aria-label=\"{}\"]')"
    wait_until(lambda: browser.evaluate(f"!!{field.format('Password')}"), timeout=90, what="the sign-in form")
    assert not browser.evaluate(f"{PAGES}.length"), "pages shown before signing in"
    # No screenshot here: one taken before signing in (captureBeyondViewport) left the chunks the pages
    # load lazily afterwards failing ("Unable to preload CSS"), in this headless Chromium.
    browser.type_into(field.format("User name"), "admin")
    browser.type_into(field.format("Password"), password)
    button = "[...document.querySelectorAll('button')].find(b => b.innerText.trim() == 'Sign in')"
    browser.click(button)


def test_after_a_demo_every_page_shows_what_the_user_should_see(
    demo: Demo, streamlit_url: str, browser: DevTools, tmp_path: Path
) -> None:
    from kubetrader import formatting as fmt
    from kubetrader.results.trades import closed_trades

    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots in {shots}")
    metrics = demo.backtest.metrics
    sharpe = fmt.metric_value("sharpe_ratio", metrics["sharpe_ratio"])
    total = fmt.metric_value("total_return", metrics["total_return"])
    trades = len(closed_trades(demo.backtest.trades))
    assert f"of {trades} trades" in demo.tearsheet and metrics["num_trades"] == trades
    browser.call("Page.navigate", url=streamlit_url)
    _sign_in_as_local_admin(browser, demo)
    labels = wait_until(
        lambda: browser.evaluate(f"({IDLE}) ? {PAGES}.map(b => b.innerText) : []") or [],
        timeout=90,
        what="the app's pages",
    )
    assert len(labels) == 11, labels
    assert not browser.evaluate("!!document.querySelector('[data-testid=\"stAppDeployButton\"]')"), "Deploy button"
    card = f"Sharpe: {sharpe}"  # the same text on every page that shows the demo's Sharpe
    expect = {
        # page: (JS condition for "rendered", strings the user must see)
        "Dashboard": (
            "text.includes('Latest backtest') && main.querySelector('.js-plotly-plot')",
            [card, "Total return: " + total, f"Trades: {trades}", "sma-orcl"],
        ),
        "Trade Log": ("text.includes('Trades matching')", ["Trades matching"]),
        "Performance": ("main.querySelectorAll('.js-plotly-plot').length >= 4", [card, "Top 5 drawdowns"]),
        "Analytics": ("text.includes('Compare results')", [fmt.metric_label("sharpe_ratio")]),
        "Backtests": (
            "text.includes('closed round trips')",
            [f"Trades ({trades} closed round trips)", card, f"Trades: {trades}"],
        ),
        "Optimization": ("text.includes('Trials: ')", [f"Trials: {demo.trials}", f"{demo.trials} of {demo.trials}"]),
        # The runs table renders after the cards: wait for the Sharpe in it, not only the heading.
        "MLflow": (f"text.includes('Recent runs') && text.includes('{sharpe}')", [f"Runs: {demo.mlflow_runs}", sharpe]),
        "Health": ("text.includes('Work queue')", ["Overall"]),
        "Logs": (
            "main.querySelector('[data-testid=\"stCode\"]')",
            [f"backtest {demo.backtest.metadata.id} succeeded"],
        ),
        "Settings": ("text.includes('secrets are masked')", []),
    }
    seen = {}
    for index, label in enumerate(labels):
        ready, wanted = expect.get(label, ("true", []))
        text = _open(browser, index, label, ready, wanted)
        browser.screenshot(shots / f"{index + 1:02d}-{label.lower().replace(' ', '-')}.png")
        seen[label] = text
        missing = [w for w in wanted if w not in text]
        assert not missing, f"{label}: {missing} not in\n{text[:4000]}"
        assert "Traceback" not in text and "None" not in text.split(), label
        assert not browser.evaluate("document.querySelectorAll('[data-testid=\"stAlertContentError\"]').length"), label
    assert sorted(p.name for p in shots.iterdir())[0] == "01-dashboard.png"
    assert all(p.stat().st_size > 10_000 for p in shots.iterdir())
