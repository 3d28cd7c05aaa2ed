"""Cross-checks between the project's independent judges: each verdict is confirmed another way.

* The explicit checker and z3 agree at the default bound of `sessionguard
  check`: what the checker says holds in `reference`, z3 proves for every
  bound; each counterexample the checker finds in `prefix` and `seed`, z3's
  bounded search over the encoding restricted to that same bound finds at
  exactly the same depth, and no shorter one.  (tests/test_proofs_agreement.py
  shows that the encoding has the model's successors from every reachable
  state; this file compares the verdicts themselves.)
* Every counterexample a command prints replays to the same violation: each
  trace of `check --format json` (the shortest, and one per breaking rule)
  replays through the current model rules to a state or step where the same
  property fails with the same condition; each failure of `explore`, through
  its replay token and its replay file, gives `sessionguard replay` the same
  verdict and the same findings.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from functools import cache
from typing import Any

import pytest

from sessionguard.cli import main
from sessionguard.explain import judge, replay
from sessionguard.model import BY_NAME, DESIGNS, Bounds, CheckerConfig, check
from sessionguard.model.checker import HOLDS, VIOLATED
from sessionguard.model.properties import Invariant, StepInvariant
from sessionguard.model.vocabulary import FAULTS, KINDS
from sessionguard.proofs.claims import CLAIMS
from sessionguard.proofs.encoding import Env
from sessionguard.proofs.prove import PROVED, _bad, prove
from sessionguard.proofs.system import System, bmc

#: `sessionguard check`'s default bound.
CLI_DEFAULT = Bounds(messages=2, faults=1, sessions=1, kinds=KINDS, fault_kinds=FAULTS)
SAFETY = {c.name: c for c in CLAIMS}


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


@cache
def checked(design: str) -> dict[str, Any]:
    report = check(DESIGNS[design], CLI_DEFAULT, CheckerConfig())
    assert report.complete
    return {v.prop.name: v for v in report.verdicts}


@cache
def system(design: str) -> System:
    b = CLI_DEFAULT
    return System(design, Env(b.messages, b.faults, b.kinds, b.fault_kinds))


# --- the checker and z3 -------------------------------------------------------------------


@pytest.mark.slow  # the inductive proof takes a few seconds idle, minutes on a busy machine
def test_what_the_checker_finds_holding_in_reference_z3_proves_for_every_bound():
    verdicts = checked("reference")
    report = prove("reference")
    proved = {r.prop: r.status for r in report.results}
    assert set(proved) <= set(verdicts)
    for name, status in proved.items():
        assert verdicts[name].status == HOLDS
        assert status == PROVED, (name, status)


def z3_depth(design: str, prop: str, max_depth: int) -> tuple[str, int]:
    """z3's bounded search at the default bound, with the prover's own "property fails" formula."""
    claim = SAFETY[prop]
    status, depth, _ = bmc(system(design), _bad(claim, design), max_depth, step_property=claim.kind == "step")
    return status, depth


def violated_pairs(max_length: int | None, min_length: int = 0) -> list[tuple[str, str, int]]:
    """(design, property, checker's counterexample length) for each safety property the
    checker finds violated at the default bound, within the given lengths."""
    out = []
    for design in ("prefix", "seed"):
        for name, v in checked(design).items():
            if name in SAFETY and v.status == VIOLATED:
                n = len(v.trace)
                if min_length <= n and (max_length is None or n <= max_length):
                    out.append((design, name, n))
    return out


def test_prefix_counterexamples_have_the_same_depth_in_z3():
    """The #11016 trap (an orphan guard, a lock that never heals) at exactly the checker's depth;
    the longer counterexamples are compared in the slow run."""
    pairs = [p for p in violated_pairs(max_length=4) if p[0] == "prefix"]
    assert {name for _, name, _ in pairs} >= {"no-orphan-guard", "dead-lock-heals"}
    for design, name, length in pairs:
        assert z3_depth(design, name, length) == ("found", length), (design, name)


@pytest.mark.slow
def test_every_counterexample_has_the_same_depth_in_z3():
    for design, name, length in violated_pairs(max_length=None):
        assert z3_depth(design, name, length) == ("found", length), (design, name)


@pytest.mark.slow
@pytest.mark.parametrize("design", ["prefix", "seed"])
def test_what_the_checker_finds_holding_z3_does_not_refute_nearby(design):
    """For the properties that hold in prefix and seed, z3 finds no counterexample within
    six steps at the same bound (a bounded confirmation: the whole state space is deeper)."""
    for name, v in checked(design).items():
        if name in SAFETY and v.status == HOLDS:
            assert z3_depth(design, name, 6) == ("none", 6), (design, name)


# --- check's counterexamples, through its JSON report -----------------------------------------


@pytest.fixture(scope="module")
def check_report() -> dict[str, Any]:
    code, out = cli("check", "--format", "json", "--by-rule", "--jobs", "1")
    assert code == 0
    data: dict[str, Any] = json.loads(out)
    return data


def test_check_json_counterexamples_replay_to_the_same_violation(check_report):
    replayed = 0
    for r in check_report["reports"]:
        design = DESIGNS[r["design"]]
        b = r["bounds"]
        bounds = Bounds(b["messages"], b["faults"], b["sessions"], tuple(b["kinds"]), tuple(b["fault_kinds"]))
        for v in r["verdicts"]:
            prop = BY_NAME[v["property"]]
            if v["status"] != VIOLATED:
                assert v["trace"] is None and not v["by_rule"]
                continue
            assert (v["known"] is not None) == (prop.name in design.known)
            traces = [(None, v["trace"]), *v["by_rule"].items()]
            for rule, steps in traces:
                where = f"{design.name}/{prop.name}" + (f" by {rule}" if rule else "")
                trace = replay(design, bounds, steps, where=where)
                condition = judge(design, bounds, prop, trace, stored=v["condition"], where=where)
                if rule is not None:
                    # The named rule breaks it at the last step: the rebuilt trace may name
                    # another rule that leads to the very same state (a cleanup that raises
                    # or is cancelled), so ask the model for the named one.
                    before, after = trace.states[-2], trace.states[-1]
                    assert any(
                        st.rule == rule and nxt == after
                        for st, nxt in design.successors(before, bounds)
                    ), where
                if isinstance(prop, Invariant):
                    # It fails at the end, and (for the shortest) nowhere before.
                    if rule is None:
                        assert condition == v["condition"], where
                        assert all(prop.check(s) is None for s in trace.states[:-1]), where
                elif isinstance(prop, StepInvariant) and rule is None:
                    assert condition == v["condition"], where
                replayed += 1
    violated = sum(v["status"] == VIOLATED for r in check_report["reports"] for v in r["verdicts"])
    assert violated >= 8 and replayed > violated  # the README table: prefix 5, seed 3; and per-rule variants


# --- explore's failures, through `sessionguard replay` -----------------------------------------


EXPLORED = [
    ("prefix", "cancelled-task", "random"),
    ("prefix", "wedged-stop", "pct"),
    ("seed", "stop-error", "dfs"),
    ("seed", "double-stop", "random"),
]


@pytest.mark.parametrize("design,scenario,strategy", EXPLORED)
def test_explore_failures_replay_to_the_same_verdict_and_findings(tmp_path, design, scenario, strategy):
    saved = tmp_path / "failure.json"
    budget = [] if strategy == "dfs" else ["--schedules", "200", "--seed", "3"]
    code, out = cli("explore", "--design", design, "--scenario", scenario, "--strategy", strategy,
                    *budget, "--save", str(saved), "--format", "json")
    assert code == 0  # only known findings
    entry = json.loads(out)[0]
    failure = entry["failure"]
    assert failure is not None and failure["properties"], entry
    token = re.fullmatch(r"sessionguard replay (\S+)", failure["replay"])
    assert token is not None and token.group(1) == str(saved)
    # The explored failure, as its token gives it (explore prints the token without --save).
    code, text = cli("explore", "--design", design, "--scenario", scenario, "--strategy", strategy,
                     *budget, "--format", "json")
    failure_by_token = json.loads(text)[0]["failure"]
    match = re.fullmatch(r"sessionguard replay --token (\S+)", failure_by_token["replay"])
    assert match is not None
    for argv in (["replay", str(saved)], ["replay", "--token", match.group(1)]):
        code, text = cli(*argv, "--format", "json")
        got = json.loads(text)
        assert code == 0, argv
        assert got["design"] == design and got["scenario"]["name"] == scenario
        assert got["verdict"] == failure["verdict"]
        assert got["properties"] == failure["properties"], argv
        assert got["mismatch"] == failure["mismatch"] and got["problem"] == failure["problem"]
        assert got["story"] == failure["story"]
