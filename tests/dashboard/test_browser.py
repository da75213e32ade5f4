"""One real-browser test: the API and `streamlit run` on loopback ports, every tab opened in
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
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.dashboard import RunningApi
from tests.helpers import ROOT, free_port, wait_until

pytestmark = [pytest.mark.xdist_group("dashboard"), pytest.mark.slow]

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

        self._ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
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

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        self._ws.close()


@pytest.fixture
def streamlit_url(dashboard_api: RunningApi, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "FASTAPI_BACKEND_URL": dashboard_api.url,
        "KUBETRADER_API_TOKEN": dashboard_api.token,
        "HOME": str(tmp_path),  # streamlit writes ~/.streamlit
    }
    command = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]  # fmt: skip
    log = (tmp_path / "streamlit.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(url + "/_stcore/health").status_code == 200,
            timeout=60,
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
# Every panel stays mounted; the one shown is the one with a layout box.
PANEL = "[...document.querySelectorAll('[data-testid=\"stTabPanel\"]')].find(p => p.offsetParent !== null)"


def test_every_tab_renders_in_chromium_without_an_error(
    dashboard_api: RunningApi, streamlit_url: str, browser: DevTools, tmp_path: Path
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots in {shots}")
    browser.call("Page.navigate", url=streamlit_url)
    labels = wait_until(
        lambda: (
            browser.evaluate(f"({IDLE}) ? [...document.querySelectorAll('[role=\"tab\"]')].map(b => b.innerText) : []")
            or []
        ),
        timeout=90,
        what="the app's tabs",
    )
    assert len(labels) == 10, labels
    seen: dict[str, dict[str, int]] = {}
    for index, label in enumerate(labels):
        browser.click(f"document.querySelectorAll('[role=\"tab\"]')[{index}]")
        expect_chart = label in ("Dashboard", "Performance", "MLflow")
        state_js = f"""(() => {{
            const panel = {PANEL};
            if (!panel || !({IDLE})) return null;
            return {{
                selected: document.querySelectorAll('[role="tab"]')[{index}].getAttribute('aria-selected'),
                charts: panel.querySelectorAll('.js-plotly-plot .main-svg').length,
                metrics: panel.querySelectorAll('[data-testid="stMetric"]').length,
                elements: panel.querySelectorAll('[data-testid="stElementContainer"]').length,
                exceptions: document.querySelectorAll('[data-testid="stException"]').length,
                errors: document.querySelectorAll('[data-testid="stAlertContentError"]').length,
            }};
        }})()"""

        def rendered(js: str = state_js, charts: bool = expect_chart) -> dict[str, int]:
            state = browser.evaluate(js)
            if not state or state["selected"] != "true" or state["elements"] == 0:
                return {}
            return state if (state["charts"] > 0 or not charts) else {}

        state = wait_until(rendered, timeout=45, interval=0.25, what=f"tab {label!r} to render")
        browser.screenshot(shots / f"{index + 1:02d}-{label.lower().replace(' ', '-')}.png")
        seen[label] = state
    assert all(state["exceptions"] == 0 and state["errors"] == 0 for state in seen.values()), seen
    assert seen["Dashboard"]["charts"] >= 1, "the equity chart is missing"
    assert seen["MLflow"]["metrics"] >= 4, "the MLflow cards are missing"
    assert sorted(p.name for p in shots.iterdir())[0] == "01-dashboard.png"
    assert all(p.stat().st_size > 10_000 for p in shots.iterdir())
