"""`sessionguard explain` for runs of the asyncio adapter (explore, replay tokens) and z3 traces.

The runs are found here, as explore finds them (a random exploration with a
fixed seed, the schedule shrunk), then handed to explain as a token, a replay
file and explore's JSON output; the z3 counterexample is prefix's #11016 trap
(under a second).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sessionguard.cli import main
from sessionguard.explain import (
    ExplainError,
    diagram,
    from_observed_run,
    mermaid,
    narrative,
    render_markdown,
    render_text,
    table,
)
from sessionguard.explain_runs import from_schedule, kind_of, observe_schedule
from sessionguard.loop import Schedule, explore_random, shrink
from sessionguard.model import DESIGNS
from sessionguard.reference.harness import (
    encode_token,
    findings_of,
    replay_document,
    scenario_run,
    violates,
)
from sessionguard.reference.refinement import Finding, project
from sessionguard.reference.scenarios import SCENARIOS

SCREEN = 50  # lines
SEED = 1
TRAP = "no-orphan-guard"
TRAP_CONDITION = "G[k0] is present, but no task of k0 is alive"


def found(design: str, scenario: str, prop: str, *, shrunk: bool = True) -> Schedule:
    """The first schedule a seeded random exploration finds that violates `prop`, as explore reports it."""
    factory = scenario_run(design, SCENARIOS[scenario])
    ex = explore_random(factory, runs=200, seed=SEED, is_failure=violates(prop), keep_failures=1)
    first = ex.first_failure
    assert first is not None, f"{design}/{scenario}: no schedule violates {prop} (seed {SEED})"
    if not shrunk:
        return first.schedule
    better = shrink(factory, first.schedule, violates(prop), max_runs=300)
    return (better or first).schedule


@pytest.fixture(scope="module")
def trap() -> tuple[str, Schedule]:
    """Prefix's #11016 trap (dead owner) on the cancelled-task scenario, and its token."""
    schedule = found("prefix", "cancelled-task", TRAP)
    return encode_token("prefix", SCENARIOS["cancelled-task"], schedule), schedule


def replay_hint(design: str, scenario: str, schedule: Schedule) -> str:
    """The command that shows a failing case again."""
    return f"sessionguard explain --token {encode_token(design, SCENARIOS[scenario], schedule)}"


def _flat(lines: list[str]) -> str:
    return " ".join(" ".join(lines).split())


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


# --- a run of the adapter ---------------------------------------------------------------------


def test_the_trap_from_a_token_in_every_format(trap: tuple[str, Schedule], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token, _ = trap
    assert main(["explain", "--token", token, "--format", "text"]) == 0
    text = capsys.readouterr().out
    assert f"({TRAP}), fails in 3 steps" in text
    assert f"condition that failed: {TRAP_CONDITION}" in text
    assert "found in the asyncio adapter of prefix, scenario cancelled-task" in text
    assert "the run also violates: " in text and "dead-lock-heals" in text
    assert f"reproduce: sessionguard explain --token {token} --property {TRAP}" in text
    assert main(["explain", "--token", token, "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert "```mermaid" in md and "| step | loop | who | G[k0] | O[k0] | P[k0] | R[k0] |" in md
    out = tmp_path / "trap.html"
    assert main(["explain", "--token", token, "--format", "html", "-o", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and "<svg" in html and "loop step" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", html)


def test_the_trap_is_the_model_path_the_run_took(trap: tuple[str, Schedule]) -> None:
    token, schedule = trap
    ex = from_schedule("prefix", SCENARIOS["cancelled-task"], schedule, prop=None, source="")
    assert ex.prop.name == TRAP  # the earliest finding of the run
    rules = [s.rule for s in ex.trace.steps]
    assert rules == ["H:start", "cancel-task", "cancelled-before-start"]
    assert ex.violating == 2 and ex.notes is not None and len(ex.notes) == 3
    labels = [n.label for n in ex.notes]
    assert labels[0].endswith("deliver-text-k0") and labels[1].endswith("fault-task-cancelled")
    # Each state of the path looks, from outside, exactly like the adapter did.
    _, observed = observe_schedule("prefix", SCENARIOS["cancelled-task"], schedule)
    by_step = {o.loop_step: o.observed for o in observed}
    for note, state in zip(ex.notes, ex.trace.states[1:], strict=True):
        assert project(state, DESIGNS["prefix"]) == by_step[note.loop_step]
    # The narrative names the property and the exact condition, at the step where it fails.
    lines = narrative(ex)
    assert TRAP in _flat(lines) and TRAP_CONDITION in _flat(lines)
    assert sum("⚠" in line for line in lines) == 1
    assert len(lines) <= SCREEN and len(mermaid(ex).splitlines()) <= SCREEN


def test_the_trap_from_a_replay_file(trap: tuple[str, Schedule], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, schedule = trap
    path = tmp_path / "trap.json"
    path.write_text(json.dumps(replay_document("prefix", SCENARIOS["cancelled-task"], schedule)))
    for fmt in ("text", "markdown", "html"):
        assert main(["explain", "--from", str(path), "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert TRAP in out and TRAP_CONDITION in out, fmt
    assert main(["explain", "--from", str(path), "--property", "no-trapped-session"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "from here nothing settles" in out and "P[k0] still holds m1" in out


def test_explore_output_feeds_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real pipeline: `explore --format json` saved to a file, then `explain --from` it."""
    main(["explore", "--design", "prefix", "--scenario", "dead-owner", "--strategy", "random",
          "--schedules", "20", "--seed", str(SEED), "--format", "json"])
    report = tmp_path / "explore.json"
    report.write_text(capsys.readouterr().out)
    assert kind_of(json.loads(report.read_text())) == "explore"
    assert main(["explain", "--from", str(report), "--property", "dead-lock-heals"]) == 0
    out = capsys.readouterr().out
    assert "scenario dead-owner" in out and "(dead-lock-heals)" in out and "⚠" in out
    assert "no failure for" in _error(["explain", "--from", str(report), "--scenario", "followups"], capsys)
    # With --save, explore's output names the replay file instead of a token.
    saved = tmp_path / "trap.json"
    main(["explore", "--design", "prefix", "--scenario", "dead-owner", "--strategy", "random",
          "--schedules", "20", "--seed", str(SEED), "--format", "json", "--save", str(saved)])
    report.write_text(capsys.readouterr().out)
    assert main(["explain", "--from", str(report), "--property", "dead-lock-heals"]) == 0
    assert capsys.readouterr().out.replace(str(report), "FILE") == out.replace(str(report), "FILE")
    saved.unlink()
    assert "which is missing" in _error(["explain", "--from", str(report)], capsys)


def test_deviations_from_fifo_are_marked() -> None:
    schedule = found("seed", "stop-midrun", "handoff", shrunk=False)
    ex = from_schedule("seed", SCENARIOS["stop-midrun"], schedule, prop="handoff", source="")
    assert ex.notes is not None
    deviated = [i for i, n in enumerate(ex.notes) if n.deviated]
    assert deviated, f"the random schedule should deviate from FIFO at a model step: {replay_hint('seed', 'stop-midrun', schedule)}"
    rows = diagram(ex).rows
    for i in deviated:
        assert any(r.step == i and "not FIFO" in r.label for r in rows if r.kind == "arrow")
    cols, cells = table(ex)
    assert cols[:3] == ["step", "loop", "who"]
    assert all(cells[i + 1][1].endswith("⤳") for i in deviated)
    assert sum("not FIFO (choice" in line for line in narrative(ex)) == len(deviated)
    told = _flat(narrative(ex))
    assert all(f"after {n.unseen} unseen" in told for n in ex.notes if n.unseen)


@pytest.mark.parametrize(
    ("scenario", "prop"),
    [
        ("stop-midrun", "handoff"),
        ("double-stop", "stop-works"),
        ("wedged-stop", "no-unguarded-worker"),
        ("send-hangs", "stop-works"),
        ("stop-error", "no-orphan-guard"),
        ("cancel-followup", "no-trapped-session"),
        ("two-chats", "no-unguarded-worker"),
    ],
)
def test_seed_findings_fit_one_screen(scenario: str, prop: str) -> None:
    schedule = found("seed", scenario, prop)
    ex = from_schedule("seed", SCENARIOS[scenario], schedule, prop=prop, source="")
    lines = narrative(ex)
    again = replay_hint("seed", scenario, schedule)
    assert len(lines) <= SCREEN and len(mermaid(ex).splitlines()) <= SCREEN, again
    assert prop in _flat(lines) and " ".join(ex.condition.split()) in _flat(lines), again
    assert "⚠" in render_text(ex) and "```mermaid" in render_markdown(ex)


def test_a_finding_in_one_session_leaves_the_other_sessions_work_out() -> None:
    schedule = found("seed", "two-chats", "no-unguarded-worker")
    whole = observe_schedule("seed", SCENARIOS["two-chats"], schedule)
    ex = from_schedule("seed", SCENARIOS["two-chats"], schedule, prop="no-unguarded-worker", source="")
    again = replay_hint("seed", "two-chats", schedule)
    assert "of sessions other than k0" in ex.left_out, again
    # Every message still arrives (no renaming); of the rest, only session k0 moves.
    arrivals = [s for s in ex.trace.steps if s.actor == "platform"]
    assert len(arrivals) == len(whole[1][-1].observed.messages), again
    for i, step in enumerate(ex.trace.steps):
        if step.actor != "platform":
            tid = int(step.actor[1:])
            assert next(t.session for t in ex.trace.states[i].tasks if t.tid == tid) == 0, again
    assert ex.condition.startswith("T(m0) is processing for session k0"), again


def test_the_users_recovery_stop_is_part_of_the_path() -> None:
    """A wedged prefix session: the harness sends the user's /stop beyond the scenario's
    messages (as the model's liveness check does), and the rebuilt path takes it too."""
    scenario = SCENARIOS["wedged-stop"]
    schedule = found("prefix", "wedged-stop", "no-trapped-session")
    ex = from_schedule("prefix", scenario, schedule, prop="no-trapped-session", source="")
    again = replay_hint("prefix", "wedged-stop", schedule)
    beyond = [
        s for s in ex.trace.steps
        if s.actor == "platform" and s.message is not None and s.message >= scenario.bounds().messages
    ]
    assert beyond and all(ex.trace.states[-1].messages[s.message].kind == "/stop" for s in beyond if s.message is not None), again
    assert ex.violating < len(ex.trace) - 1, again  # the point of no return comes before the recovery
    assert "from here nothing settles" in _flat(narrative(ex))


def test_from_observed_run_refuses_a_step_the_model_does_not_have(trap: tuple[str, Schedule]) -> None:
    """What a conformance run hands over: the observed steps and the finding."""
    _, schedule = trap
    scenario = SCENARIOS["cancelled-task"]
    result, steps = observe_schedule("prefix", scenario, schedule)
    finding = findings_of(result)[TRAP]
    ex = from_observed_run("prefix", scenario.bounds(), steps, finding, origin="in a test run")
    assert ex.prop.name == TRAP and ex.condition == finding.why and len(ex.trace) == 3
    # An adapter that, say, forgot to install the guard: the second change is no model step.
    changed = [i for i in range(1, len(steps)) if steps[i].observed != steps[i - 1].observed]
    bad = list(steps)
    first = bad[changed[0]]
    wrong = first.observed._replace(sessions=(first.observed.sessions[0]._replace(guard=None),))
    bad[changed[0]] = first.__class__(first.loop_step, first.label, wrong)
    with pytest.raises(ExplainError, match=f"loop step {first.loop_step} .* is not a step of the model of prefix"):
        from_observed_run("prefix", scenario.bounds(), bad, finding)
    with pytest.raises(ExplainError, match="unknown property"):
        from_observed_run("prefix", scenario.bounds(), steps, Finding("no-such", 3, "x", "y"))


# --- z3 counterexamples ---------------------------------------------------------------------


def test_a_prove_counterexample_is_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--prove", "--design", "prefix", "--property", TRAP]) == 0
    direct = capsys.readouterr().out
    assert "found by z3" in direct and f"condition that failed: {TRAP_CONDITION}" in direct
    assert "cancelled-before-start" in direct and "⚠ 3" in direct
    main(["prove", "--design", "prefix", "--property", TRAP, "--format", "json"])
    report = tmp_path / "prove.json"
    report.write_text(capsys.readouterr().out)
    out = tmp_path / "prove.md"
    assert main(["explain", "--from", str(report), "--format", "markdown", "-o", str(out)]) == 0
    md = out.read_text(encoding="utf-8")
    assert "```mermaid" in md and TRAP_CONDITION in md
    # The same counterexample both ways (only the way to reproduce it differs).
    assert main(["explain", "--from", str(report)]) == 0
    from_file = capsys.readouterr().out
    strip = [line for line in direct.splitlines() if not line.startswith("reproduce:")]
    assert [line for line in from_file.splitlines() if not line.startswith("reproduce:")] == strip
    # A report whose trace has no states (or states z3 cannot have reached) is refused.
    data = json.loads(report.read_text())
    states = data["reports"][0]["results"][0]["trace"].pop("states")
    report.write_text(json.dumps(data))
    assert "has no states" in _error(["explain", "--from", str(report)], capsys)
    states[1]["t0_pc"] = 3  # not where a task starts
    data["reports"][0]["results"][0]["trace"]["states"] = states
    report.write_text(json.dumps(data))
    assert "step 1 of the z3 trace is no step of the model of prefix" in _error(["explain", "--from", str(report)], capsys)


def test_no_counterexample_nothing_to_explain(capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(["explain", "--prove", "--design", "prefix", "--property", "one-worker", "--depth", "2"], capsys)
    assert "prove: prefix/one-worker is UNKNOWN" in err and "no counterexample up to depth 2" in err


# --- bad input ----------------------------------------------------------------------------------


def test_bad_tokens_and_files(trap: tuple[str, Schedule], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token, schedule = trap
    out = tmp_path / "out.html"
    assert "not a replay token" in _error(["explain", "--token", "not-a-token", "-o", str(out)], capsys)
    assert "not a replay token" in _error(["explain", "--token", token[:-9], "-o", str(out)], capsys)
    # A token recorded on another Python minor version.
    other = Schedule(schedule.steps, "3.9", schedule.max_steps, schedule.max_virtual_time)
    err = _error(["explain", "--token", encode_token("prefix", SCENARIOS["cancelled-task"], other), "-o", str(out)], capsys)
    assert "recorded on Python 3.9" in err and "Replay it with Python 3.9" in err
    # Files of the wrong kind say which kinds are accepted.
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"design": "prefix", "verdict": "ok", "story": []}))  # replay --format json
    err = _error(["explain", "--from", str(wrong), "-o", str(out)], capsys)
    assert "not a file explain reads" in err and "explore --save" in err and "prove --format json" in err
    wrong.write_text("[1, 2]")
    assert "not a file explain reads" in _error(["explain", "--from", str(wrong)], capsys)
    broken = tmp_path / "broken.json"
    doc = replay_document("prefix", SCENARIOS["cancelled-task"], schedule)
    doc["schedule"]["format"] = "something else"
    broken.write_text(json.dumps(doc))
    assert "broken replay file" in _error(["explain", "--from", str(broken), "-o", str(out)], capsys)
    # A run that breaks nothing, and a property this run does not break.
    fine = encode_token("reference", SCENARIOS["cancelled-task"], schedule)
    assert "violates no property" in _error(["explain", "--token", fine, "-o", str(out)], capsys)
    assert "does not violate order" in _error(["explain", "--token", token, "--property", "order"], capsys)
    # Options that do not go together.
    assert "give one of them" in _error(["explain", "--token", token, "--from", str(wrong)], capsys)
    assert "drop --design" in _error(["explain", "--token", token, "--design", "seed"], capsys)
    assert "takes the bound" in _error(["explain", "--token", token, "--messages", "2"], capsys)
    assert "use it with --prove" in _error(["explain", "--design", "seed", "--property", "order", "--depth", "3"], capsys)
    assert "use it with --from" in _error(["explain", "--token", token, "--scenario", "dead-owner"], capsys)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.json", "wrong.json"]
