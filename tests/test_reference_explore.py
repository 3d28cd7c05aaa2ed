"""The asyncio adapter under the controlled loop, checked step by step against the model."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from sessionguard.cli import main
from sessionguard.loop import (
    RunResult,
    Schedule,
    explore_dfs,
    explore_pct,
    explore_random,
    replay,
    run,
)
from sessionguard.model import DESIGNS, Bounds, CheckerConfig, check
from sessionguard.reference.adapter import Activation, Job, ReferenceAdapter
from sessionguard.reference.harness import (
    decode_token,
    encode_token,
    findings_of,
    mismatch_of,
    narrate,
    scenario_run,
    violates,
)
from sessionguard.reference.refinement import RefinementMismatch
from sessionguard.reference.scenarios import SCENARIOS

TRAP = ("no-orphan-guard", "no-trapped-session", "dead-lock-heals")


def clean(result: RunResult) -> bool:
    """A failure for the reference: any verdict but ok, or any property violated."""
    return result.verdict != "ok" or bool(findings_of(result))


# --- prefix: the #11016 trap, found in running code by every strategy -----------------


@pytest.mark.parametrize("strategy", ["dfs", "random", "pct"])
@pytest.mark.parametrize("scenario", ["cancelled-task", "dead-owner", "wedged-stop"])
def test_prefix_trap_found_by_each_strategy_and_replayed(strategy: str, scenario: str) -> None:
    sc = SCENARIOS[scenario]
    factory = scenario_run("prefix", sc)
    is_trap = violates(*TRAP)
    if strategy == "dfs":
        ex = explore_dfs(factory, max_deviations=2, is_failure=is_trap)
    elif strategy == "random":
        ex = explore_random(factory, runs=200, seed=7, is_failure=is_trap)
    else:
        ex = explore_pct(factory, runs=200, seed=7, is_failure=is_trap)
    assert ex.found, ex.summary()
    first = ex.first_failure
    assert first is not None
    assert first.verdict == "ok"  # every step was a model transition
    again = replay(scenario_run("prefix", sc), first.schedule)
    assert again.verdict == "ok"
    assert findings_of(again).keys() == findings_of(first).keys()
    assert set(findings_of(again)) & set(TRAP)


def test_prefix_trap_is_in_the_known_list_and_explained() -> None:
    sc = SCENARIOS["cancelled-task"]
    ex = explore_random(scenario_run("prefix", sc), runs=100, seed=1, is_failure=violates(*TRAP))
    assert ex.first_failure is not None
    result, story = narrate("prefix", sc, ex.first_failure.schedule)
    assert any("cancel-task" in line for line in story)
    assert any("cancelled-before-start" in line for line in story)
    found = findings_of(result)
    assert "no-orphan-guard" in found
    assert "no-orphan-guard" in DESIGNS["prefix"].known


# --- reference: bounded-exhaustive DFS of every named scenario ---------------------------


@pytest.mark.parametrize("name", [n for n in SCENARIOS if n not in ("all-faults", "two-chats")])
def test_reference_dfs_every_scenario(name: str) -> None:
    """Every schedule with at most 2 deviations from FIFO: no mismatch, no violation.

    Full DFS is exhaustive in principle but does not finish in test time on
    the three-message scenarios (more than 15,000 schedules in 20 s for
    `followups`), so the search is bounded by deviations; see the slow test
    and benchmarks/explore_bench.py for deeper bounds.
    """
    ex = explore_dfs(scenario_run("reference", SCENARIOS[name]), max_deviations=2, is_failure=clean)
    assert ex.exhausted
    assert not ex.found, _explain(ex.first_failure)


def test_reference_random_and_pct_with_every_fault() -> None:
    factory = scenario_run("reference", SCENARIOS["all-faults"])
    for ex in (
        explore_random(factory, runs=30, seed=3, is_failure=clean),
        explore_pct(factory, runs=30, seed=3, is_failure=clean),
    ):
        assert not ex.found, _explain(ex.first_failure)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_reference_dfs_deeper(name: str) -> None:
    ex = explore_dfs(
        scenario_run("reference", SCENARIOS[name]), max_deviations=4, is_failure=clean, max_seconds=300
    )
    assert not ex.found, _explain(ex.first_failure)


@pytest.mark.slow
def test_reference_campaign_all_faults() -> None:
    factory = scenario_run("reference", SCENARIOS["all-faults"])
    for ex in (
        explore_random(factory, runs=10_000, seed=11, is_failure=clean),
        explore_pct(factory, runs=10_000, seed=11, is_failure=clean),
    ):
        assert not ex.found, _explain(ex.first_failure)


def _explain(result: RunResult | None) -> str:
    if result is None:
        return ""
    return f"{result.describe()}\n{findings_of(result)}\n{result.violation}"


# --- seed: the implementation's findings agree with the model's --------------------------

# Scenarios whose model check at the scenario's own bounds takes well under a second.
AGREEMENT = [n for n in SCENARIOS if n not in ("wedged-stop", "all-faults", "two-chats")]


def _impl_findings(design: str, name: str) -> set[str]:
    factory = scenario_run(design, SCENARIOS[name])
    found: set[str] = set()

    def record(result: RunResult) -> bool:
        assert result.verdict == "ok", _explain(result)
        found.update(findings_of(result))
        return False

    explore_dfs(factory, max_deviations=2, is_failure=record, stop_on_failure=False)
    explore_random(factory, runs=150, seed=5, is_failure=record, stop_on_failure=False)
    return found


def _model_findings(design: str, bounds: Bounds) -> set[str]:
    report = check(DESIGNS[design], bounds, CheckerConfig(max_seconds=60))
    return {v.prop.name for v in report.verdicts if v.status == "violated"}


@pytest.fixture(scope="module")
def seed_findings() -> dict[str, set[str]]:
    return {name: _impl_findings("seed", name) for name in AGREEMENT}


@pytest.mark.parametrize("name", AGREEMENT)
def test_seed_findings_are_model_findings(name: str, seed_findings: dict[str, set[str]]) -> None:
    """Refinement in action: what the code violates, the model violates at the same bounds."""
    model = _model_findings("seed", SCENARIOS[name].bounds())
    assert seed_findings[name] <= model, (name, seed_findings[name] - model)


def test_seed_model_findings_are_found_in_code(seed_findings: dict[str, set[str]]) -> None:
    """And the other way round at the checker's default bounds: each model finding shows up in code."""
    model = _model_findings("seed", Bounds())
    found = set().union(*seed_findings.values())
    assert model <= found, model - found


# --- refinement catches a wrong adapter, naming the step ----------------------------------


class UnconditionalRelease(ReferenceAdapter):
    """Deliberately wrong: F2 deletes G[k] whatever it is and forgets the pending slot's owner."""

    def _finish(self, job: Job, level: Activation) -> None:
        job.finished = True
        if self.owners.get(job.key) is job.task:
            del self.owners[job.key]
        self.guards.pop(job.key, None)


class StartsWithoutOwner(ReferenceAdapter):
    """Deliberately wrong: an idle message's task is not recorded as the owner."""

    def _start(self, k: int, event: Any) -> Any:
        task = super()._start(k, event)
        del self.owners[k]
        return task


@pytest.mark.parametrize("variant", [UnconditionalRelease, StartsWithoutOwner])
def test_wrong_adapter_is_caught_by_refinement(variant: Callable[..., ReferenceAdapter]) -> None:
    factory = scenario_run("reference", SCENARIOS["followups"], adapter_factory=variant)
    ex = explore_random(factory, runs=50, seed=1, is_failure=lambda r: r.verdict != "ok")
    assert ex.found
    result = ex.first_failure
    assert result is not None and result.verdict == "violation"
    mismatch = mismatch_of(result)
    assert isinstance(mismatch, RefinementMismatch)
    text = str(mismatch)
    assert f"loop step {mismatch.step} ({mismatch.label})" in text
    assert mismatch.label.startswith(("T", "cb:"))
    assert "model transitions that were possible" in text
    assert mismatch.diffs, "the failed condition names the differing fields"


def test_every_named_scenario_refines_the_model_under_fifo() -> None:
    for design in DESIGNS:
        for name, sc in SCENARIOS.items():
            result = run(scenario_run(design, sc))
            assert result.verdict == "ok", (design, name, _explain(result))


# --- the commands --------------------------------------------------------------------


def test_explore_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("followups", "photo-burst", "stop-midrun", "dead-owner", "wedged-stop", "send-failure", "shutdown"):
        assert name in out


def test_explore_reference_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["explore", "--design", "reference", "--scenario", "stop-midrun", "--strategy", "dfs", "--depth", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "schedules" in out and "/s" in out and "every property holds" in out


def test_explore_prefix_known_exit_0_and_replay(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    save = tmp_path / "trap.json"
    code = main(
        ["explore", "--design", "prefix", "--scenario", "cancelled-task", "--strategy", "pct",
         "--schedules", "50", "--save", str(save), "--format", "json"]
    )
    assert code == 0  # prefix's trap is declared known
    data = json.loads(capsys.readouterr().out)
    entry = data[0]
    assert "no-orphan-guard" in entry["properties"]
    assert entry["properties"]["no-orphan-guard"]["known"]
    assert entry["failure"]["replay"] == f"sessionguard replay {save}"
    assert entry["failure"]["story"]
    assert main(["replay", str(save)]) == 0
    out = capsys.readouterr().out
    assert "no-orphan-guard [known]" in out


def test_replay_exit_code_follows_the_known_list(capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 1 exactly when the replayed run violates a property seed does not declare."""
    sc = SCENARIOS["stop-error"]
    ex = explore_random(scenario_run("seed", sc), runs=300, seed=3, is_failure=violates("no-orphan-guard"))
    assert ex.first_failure is not None
    found = set(findings_of(ex.first_failure))
    undeclared = found - set(DESIGNS["seed"].known)
    code = main(["replay", "--token", encode_token("seed", sc, ex.first_failure.schedule)])
    out = capsys.readouterr().out
    assert "no-orphan-guard [" in out
    assert code == (1 if undeclared else 0), out


def test_token_round_trip_and_version_refusal(capsys: pytest.CaptureFixture[str]) -> None:
    sc = SCENARIOS["dead-owner"]
    result = run(scenario_run("prefix", sc))
    token = encode_token("prefix", sc, result.schedule)
    design, scenario, schedule = decode_token(token)
    assert (design, scenario) == ("prefix", sc)
    assert schedule.steps == result.schedule.steps
    other = Schedule(result.schedule.steps, "3.0")
    bad = encode_token("prefix", sc, other)
    assert main(["replay", "--token", bad]) == 2
    err = capsys.readouterr().err
    assert "recorded on Python 3.0" in err
    assert main(["replay", "--token", "not-a-token"]) == 2
    assert main(["explore", "--scenario", "nope"]) == 2


def test_cli_entry_point_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sessionguard", "explore", "--list"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0 and "wedged-stop" in out.stdout
