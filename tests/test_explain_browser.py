"""The HTML report in a real headless browser (Debian's chromium).

Chromium is driven over its DevTools protocol on a pipe (`--remote-debugging-pipe`:
commands on fd 3, answers on fd 4, each a JSON object ended by a NUL byte), so
the test needs nothing but the standard library and the browser.  It loads the
report of a real counterexample from a file URL with networking off, then checks
that no console error or exception occurs, that the diagram is an SVG with one
row per step, and that the back and forward buttons move the highlighted step.

The browser is installed by `.ci/run` (`apt-get install -y chromium`); where it is
absent the test is skipped, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from sessionguard import tutorial
from sessionguard.explain_html import render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (CI installs it: apt-get install -y chromium)",
)

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--remote-debugging-pipe",
]


class Browser:
    """A minimal DevTools client over chromium's debugging pipe."""

    def __init__(self, profile: str) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        assert CHROMIUM is not None

        def fds() -> None:  # chromium reads commands on fd 3 and answers on fd 4
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=fds,
            close_fds=False,  # keep fds 3 and 4 (Python's own descriptors are not inheritable)
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while b"\0" not in self._buf:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer in 30 s")
            chunk = os.read(self._from_chrome, 65536)
            if not chunk:
                raise RuntimeError("chromium closed the debugging pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        out: dict[str, Any] = json.loads(raw)
        return out

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


RUNS = {
    "run:prefix-trap": ("prefix", "cancelled-task", "no-orphan-guard", True),
    "run:seed-handoff-not-fifo": ("seed", "stop-midrun", "handoff", False),
}


@pytest.fixture(scope="module", params=["seed-no-orphan-guard", "prefix-wedged", *RUNS])
def report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    """A safety finding (fails at its last step), a liveness one (fails earlier), and two
    runs of the asyncio adapter found by a seeded exploration: prefix's #11016 trap, and a
    seed finding under a schedule that leaves asyncio's order (as found, not shrunk)."""
    if request.param in RUNS:
        from test_explain_runs import found

        from sessionguard.explain_runs import from_schedule
        from sessionguard.reference.scenarios import SCENARIOS

        design, scenario, prop, shrunk = RUNS[request.param]
        schedule = found(design, scenario, prop, shrunk=shrunk)
        ex = from_schedule(design, SCENARIOS[scenario], schedule, prop=prop, source="")
    else:
        data = json.loads((Path(tutorial.__file__).resolve().parents[1] / "docs" / tutorial.DATA).read_text())
        ex = tutorial.explained(data)[request.param]
    path = tmp_path_factory.mktemp("html") / "report.html"
    path.write_text(render_html(ex), encoding="utf-8")
    return path, len(ex.trace), ex.violating


def test_report_loads_renders_and_steps(report: tuple[Path, int, int]) -> None:
    path, steps, violating = report
    with tempfile.TemporaryDirectory() as profile:
        b = Browser(profile)
        try:
            targets = b.send("Target.getTargets")["targetInfos"]
            page = next(t for t in targets if t["type"] == "page")
            session = b.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page", "Network"):
                b.send(f"{domain}.enable", session=session)
            b.send("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}, session=session)
            b.send("Page.navigate", {"url": path.as_uri()}, session=session)

            def js(expr: str) -> Any:
                r = b.send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=session)
                assert "exceptionDetails" not in r, r["exceptionDetails"]
                return r["result"].get("value")

            deadline = time.monotonic() + 20
            while js("document.readyState") != "complete" or js("document.body && document.body.getAttribute('data-current')") is None:
                assert time.monotonic() < deadline, "the page did not finish loading"
                time.sleep(0.05)

            assert js("document.querySelector('.diagram > svg') instanceof SVGSVGElement") is True
            assert js("document.querySelector('#diagram').getBBox().height > 100") is True
            assert js("document.querySelectorAll('#diagram .row.arrow').length") >= steps
            assert js("document.querySelectorAll('script[src], link[href], img[src]').length") == 0

            def highlighted() -> list[int]:
                got: list[int] = js(
                    "Array.from(new Set(Array.from(document.querySelectorAll('#diagram .row.current'))"
                    ".map(e => parseInt(e.getAttribute('data-step'), 10))))"
                )
                return got

            # It opens on the failing step (the last one here).
            assert js("document.body.getAttribute('data-current')") == str(steps)
            assert highlighted() == [steps - 1]
            js("document.getElementById('prev').click()")
            assert highlighted() == [steps - 2]
            assert js("document.querySelector('#narrative li.current').getAttribute('data-step')") == str(steps - 2)
            js("document.getElementById('prev').click()")
            js("document.getElementById('next').click()")
            assert highlighted() == [steps - 2]
            js("document.getElementById('first').click()")
            assert highlighted() == []
            assert js("document.getElementById('prev').disabled") is True
            js("document.getElementById('next').click()")
            assert highlighted() == [0]
            assert "step 1 of" in js("document.getElementById('where').textContent")
            js("document.getElementById('bad').click()")
            assert highlighted() == [violating]
            assert "fails here" in js("document.getElementById('where').textContent")
            # Flush pending events, then look for errors of any kind.
            js("1")
        finally:
            b.close()
    errors = [
        e
        for e in b.events
        if e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") in ("error", "assert"))
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error")
    ]
    assert errors == [], errors
