"""sessionguard conform: foreign adapters, deliberate bugs, the command, JUnit, the plugin."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sessionguard.conform.conformance import Options, check, replay_token
from sessionguard.reference.scenarios import SCENARIOS

HERE = Path(__file__).parent
OPTIONS = Options(schedules=300, budget_seconds=60, seed=0)


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(HERE))


@pytest.mark.parametrize(
    ("bug", "scenario", "prop"),
    [
        ("UnguardedRelease", "followups", "no-unguarded-worker"),
        ("DroppedPending", "cancel-followup", "nothing-lost"),
        ("TwoWorkers", "followups", "one-worker"),
        ("DyingTaskLeavesGuard", "dead-owner", "no-orphan-guard"),
    ],
)
def test_each_deliberate_bug_is_found_and_replays(bug: str, scenario: str, prop: str) -> None:
    target = f"hermes_gateways:{bug}"
    report = check(target, "hermes", SCENARIOS[scenario], OPTIONS)
    assert report.verdict == "violation", report
    found = {f["property"] for f in report.findings}
    assert prop in found
    assert report.narrative and report.token and report.replay
    assert report.replay.startswith(f"sessionguard conform {target} --replay ")
    _, result, lines = replay_token(target, "hermes", report.token)
    from sessionguard.conform.run import findings_of

    assert prop in findings_of(result)
    assert lines == report.narrative


@pytest.mark.parametrize("scenario", ["followups", "cancel-followup", "dead-owner", "two-chats"])
def test_the_careful_gateway_passes_where_its_buggy_variants_fail(scenario: str) -> None:
    report = check("hermes_gateways:CleanGateway", "hermes", SCENARIOS[scenario], Options(schedules=150, budget_seconds=60))
    assert report.verdict == "pass", report
    # The whole budget, unless the random walk ran every schedule first (dead-owner has 7).
    assert report.schedules == 150 or (report.exhausted and report.schedules < 150), report


def test_a_task_cancelled_before_its_first_step_skips_its_finally() -> None:
    """The lesson CleanGateway's done-callback encodes: with the release in a finally,
    a cancellation before the first step leaves the guard and the follow-up stranded."""
    report = check("hermes_gateways:DyingTaskLeavesGuard", "hermes", SCENARIOS["cancelled-task"], OPTIONS)
    assert report.verdict == "violation"
    assert "no-trapped-session" in {f["property"] for f in report.findings}


def test_reference_design_as_foreign_code_passes() -> None:
    for name in ("stop-midrun", "all-faults", "shutdown", "cancel-followup"):
        report = check("sessionguard.reference.hermes_style:ReferenceGateway", "hermes", SCENARIOS[name], Options(schedules=150, budget_seconds=60))
        assert report.verdict == "pass", report


def _cli(*args: str, cwd: Path = HERE, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessionguard", "conform", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_junit_output_parses_and_exit_code_follows_violations(tmp_path: Path) -> None:
    out = tmp_path / "report.xml"
    done = _cli("hermes_gateways:TwoWorkers", "--scenario", "followups", "--scenario", "dead-owner",
                "--schedules", "100", "--format", "junit", "-o", str(out))
    assert done.returncode == 1, done.stderr
    suite = ET.parse(out).getroot()
    assert suite.tag == "testsuite" and suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    failure = cases["followups"].find("failure")
    assert failure is not None and failure.get("type") == "one-worker"
    assert "--replay" in (failure.text or "")
    assert cases["dead-owner"].find("failure") is None
    clean = _cli("hermes_gateways:CleanGateway", "--scenario", "followups", "--schedules", "50", "--format", "json")
    assert clean.returncode == 0, clean.stderr
    data = json.loads(clean.stdout)
    assert [s["verdict"] for s in data["scenarios"]] == ["pass"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["nosuchmodule:Adapter"], "cannot import 'nosuchmodule'"),
        (["hermes_gateways:NoSuchClass"], "has no attribute"),
        (["hermes_gateways"], "module:attribute"),
        (["hermes_gateways:CleanGateway", "--binding", "hermes_gateways:CleanGateway"], "lacks"),
        (["hermes_gateways:CleanGateway", "--scenario", "nope"], "unknown scenario"),
        (["hermes_gateways:CleanGateway", "--replay", "garbage"], "not a replay token"),
        (["hermes_gateways:CleanGateway", "--budget-seconds", "0"], "--budget-seconds"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], needle: str) -> None:
    done = _cli(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert needle in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


ROBUSTNESS = '''
import asyncio, threading, time
from hermes_gateways import CleanGateway

class Explodes(CleanGateway):
    def __init__(self):
        raise RuntimeError("no config file")

class SleepsForReal(CleanGateway):
    async def handle_message(self, event):
        time.sleep(30)

class StartsThread(CleanGateway):
    async def handle_message(self, event):
        threading.Thread(target=time.sleep, args=(0.5,), daemon=True).start()
        await super().handle_message(event)

class CorruptsState(CleanGateway):
    async def handle_message(self, event):
        await super().handle_message(event)
        self._pending_messages = None

class HangsForever(CleanGateway):
    async def handle_message(self, event):
        await asyncio.get_running_loop().create_future()

class Exits(CleanGateway):
    async def handle_message(self, event):
        import os
        os._exit(7)
'''


@pytest.mark.parametrize(
    ("cls", "needle"),
    [
        ("Explodes", "building the adapter failed: RuntimeError: no config file"),
        ("SleepsForReal", "blocks the event loop"),
        ("StartsThread", "started a thread"),
        ("CorruptsState", "no longer a dict"),
        ("Exits", "died (exit code 7)"),
    ],
)
def test_a_misbehaving_adapter_gets_a_verdict_not_a_hang(tmp_path: Path, cls: str, needle: str) -> None:
    (tmp_path / "misbehaving.py").write_text(ROBUSTNESS)
    (tmp_path / "hermes_gateways.py").write_text((HERE / "hermes_gateways.py").read_text())
    done = _cli(f"misbehaving:{cls}", "--scenario", "followups", "--schedules", "5", "--budget-seconds", "20", cwd=tmp_path)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "ERROR" in done.stdout and needle in done.stdout, done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_an_adapter_that_never_answers_is_judged(tmp_path: Path) -> None:
    (tmp_path / "misbehaving.py").write_text(ROBUSTNESS)
    (tmp_path / "hermes_gateways.py").write_text((HERE / "hermes_gateways.py").read_text())
    done = _cli("misbehaving:HangsForever", "--scenario", "followups", "--schedules", "3", cwd=tmp_path)
    assert done.returncode == 1
    assert "no-trapped-session" in done.stdout or "never reached a fate" in done.stdout, done.stdout


PLUGIN_TEST = '''
import pytest

@pytest.mark.sessionguard("hermes_gateways:TwoWorkers", scenarios=["followups", "dead-owner"], schedules=100)
def test_session_guard(sessionguard_conform):
    sessionguard_conform()
'''


def test_pytest_plugin_runs_one_test_per_scenario(tmp_path: Path) -> None:
    (tmp_path / "test_gateway.py").write_text(PLUGIN_TEST)
    (tmp_path / "hermes_gateways.py").write_text((HERE / "hermes_gateways.py").read_text())
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_gateway.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert "1 failed, 1 passed" in done.stdout, done.stdout
    assert "test_session_guard[followups]" in done.stdout
    assert "one-worker" in done.stdout and "--replay" in done.stdout


def test_the_docs_binding_example_is_the_tested_file() -> None:
    docs = (HERE.parent / "docs" / "conform.md").read_text()
    block = docs.split("<!-- router_binding.py -->\n```python\n", 1)[1].split("```\n<!-- /router_binding.py -->", 1)[0]
    assert block == (HERE / "router_binding.py").read_text()


def test_a_binding_of_ones_own_drives_a_gateway_of_another_shape() -> None:
    order = check("router_binding:ChatRouter", "router_binding:RouterBinding", SCENARIOS["followups"], OPTIONS)
    assert order.verdict == "violation" and "order" in {f["property"] for f in order.findings}
    waits = check("router_binding:ChatRouter", "router_binding:RouterBinding", SCENARIOS["stop-midrun"], OPTIONS)
    assert "control-never-waits" in {f["property"] for f in waits.findings}
    fine = check("router_binding:ChatRouter", "router_binding:RouterBinding", SCENARIOS["dead-owner"], Options(schedules=100))
    assert fine.verdict == "pass", fine


@pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
def test_explain_tells_a_conform_run(tmp_path: Path, fmt: str) -> None:
    report = check("hermes_gateways:TwoWorkers", "hermes", SCENARIOS["followups"], OPTIONS)
    assert report.token is not None
    out = tmp_path / f"run.{fmt}"
    done = subprocess.run(
        [sys.executable, "-m", "sessionguard", "explain", "--token", report.token, "--target", "hermes_gateways:TwoWorkers",
         "--format", fmt, "-o", str(out)],
        cwd=HERE, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "one-worker" in text and "T(m0) and T(m1) are both processing" in text
    assert "conform run of hermes_gateways:TwoWorkers" in text
    if fmt == "markdown":
        assert "```mermaid" in text
    missing = subprocess.run(
        [sys.executable, "-m", "sessionguard", "explain", "--token", report.token],
        cwd=HERE, capture_output=True, text=True, timeout=120,
    )
    assert missing.returncode == 2 and "--target" in missing.stderr
