"""`sessionguard check`: output, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sessionguard.cli import main
from sessionguard.model import DESIGNS


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessionguard", *args], capture_output=True, text=True, timeout=300
    )


def test_default_check_reports_the_trap_and_exits_zero():
    r = run_cli("check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no undeclared violation" in r.stdout
    table = r.stdout.split("\n\n")[1]
    assert "no-orphan-guard" in table and "VIOLATED" in table
    ref_col = [line.split()[-1] for line in table.splitlines()[1:]]
    assert set(ref_col) == {"holds"}  # the reference column
    assert "== prefix: 3. No orphan guard" in r.stdout
    assert r.stderr == ""


def test_json_output_is_valid_and_complete():
    r = run_cli("check", "--design", "reference", "--format", "json")
    assert r.returncode == 0
    data = json.loads(r.stdout)
    (report,) = data["reports"]
    assert report["design"] == "reference" and report["complete"]
    assert {v["status"] for v in report["verdicts"]} == {"holds"}
    assert report["stats"]["states"] > 100


def test_json_counterexample_names_steps_and_changes():
    r = run_cli("check", "--design", "prefix", "--property", "no-orphan-guard", "--format", "json")
    data = json.loads(r.stdout)
    v = data["reports"][0]["verdicts"][0]
    assert v["status"] == "violated" and v["known"]
    assert v["trace"][0]["step"] == 1 and v["trace"][0]["changes"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["check", "--design", "bogus"], "invalid choice: 'bogus'"),
        (["check", "--messages", "0"], "out of range: use 1 to 8"),
        (["check", "--messages", "many"], "is not a whole number"),
        (["check", "--faults", "99"], "out of range: use 0 to 4"),
        (["check", "--property", "nope"], "invalid choice: 'nope'"),
        (["check", "--kinds", "text,/dance"], "unknown message kind '/dance'"),
        (["check", "--fault-kinds", "meteor"], "unknown fault 'meteor'"),
        (["check", "--kinds", ","], "--kinds is empty"),
        (["nosuch"], "invalid choice: 'nosuch'"),
    ],
)
def test_bad_input_is_one_line_exit_two(args, needle, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_an_undeclared_violation_exits_one(monkeypatch, capsys):
    monkeypatch.setattr(DESIGNS["prefix"], "known", {})
    assert main(["check", "--design", "prefix"]) == 1
    out = capsys.readouterr().out
    assert "undeclared violations: prefix/" in out
    assert "reproduce: sessionguard check --messages 2 --faults 1 --design prefix --property" in out


def test_incomplete_search_is_reported():
    r = run_cli("check", "--design", "reference", "--messages", "4", "--max-states", "1000")
    assert "INCOMPLETE (stopped by the states budget)" in r.stdout
    assert "incomplete" in r.stdout.split("\n\n")[1]
