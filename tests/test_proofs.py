"""z3 proofs: reference proved beyond every bound, known bugs found, each proof can fail."""

from __future__ import annotations

import json
import time

import pytest

from sessionguard.cli import main
from sessionguard.proofs.prove import COUNTEREXAMPLE, PROPERTY_NAMES, PROVED, prove


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = main(["prove", *argv, "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


def test_reference_proves_every_safety_property(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.perf_counter()
    code, out = run_json(capsys, "--design", "reference")
    assert time.perf_counter() - started < 30
    assert code == 0
    report = out["reports"][0]
    assert all(lemma["status"] == "inductive" for lemma in report["lemmas"])
    assert {r["property"]: r["status"] for r in report["results"]} == dict.fromkeys(PROPERTY_NAMES, PROVED)


def test_prefix_trap_is_a_counterexample(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_json(capsys, "--design", "prefix", "--property", "no-orphan-guard",
                         "--property", "dead-lock-heals", "--property", "no-trapped-session")
    assert code == 0  # the #11016 trap is declared known for prefix
    found = {r["property"]: r for r in out["reports"][0]["results"]}
    assert found["no-orphan-guard"]["status"] == COUNTEREXAMPLE and found["no-orphan-guard"]["depth"] == 3
    assert found["dead-lock-heals"]["depth"] == 4
    assert found["no-trapped-session"]["depth"] == 3
    steps = found["no-orphan-guard"]["trace"]["steps"]
    assert "task-cancelled" in steps[1] and "start" in steps[2]


@pytest.mark.parametrize(
    ("prop", "checker_depth"),
    [("no-unguarded-worker", 9), ("no-orphan-guard", 8), ("no-trapped-session", 4)],
)
def test_seed_findings_of_the_checker_are_confirmed(prop: str, checker_depth: int) -> None:
    """Each violation `sessionguard check --design seed` reports, at the same or shorter depth."""
    result = prove("seed", [prop], depth=checker_depth).results[0]
    assert result.status == COUNTEREXAMPLE
    assert result.depth is not None and result.depth <= checker_depth


@pytest.mark.parametrize(
    ("mutation", "prop", "depth"),
    [
        ("no-identity-check", "release-by-owner", 5),
        ("queue-approve", "control-never-waits", 2),
        ("no-owner-wait", "stop-works", 6),
        pytest.param("no-owner-wait", "no-unguarded-worker", 6, marks=pytest.mark.slow),
    ],
)
def test_each_proof_can_fail(mutation: str, prop: str, depth: int) -> None:
    """A documented weakening of reference turns the proof into a counterexample."""
    report = prove("reference", [prop], mutation=mutation, depth=depth)
    assert any(status != "inductive" for _, status, _ in report.lemmas)
    result = report.results[0]
    assert result.status == COUNTEREXAMPLE and result.depth == depth


def test_bad_input_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "--property", "no-such-property"]) == 2
    assert main(["prove", "--design", "seed", "--mutation", "no-identity-check"]) == 2
    assert main(["prove", "--mutation", "nope"]) == 2
    assert "unknown" in capsys.readouterr().err
