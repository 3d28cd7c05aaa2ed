"""Counterexamples that do not come from the checker: asyncio runs and z3 traces.

Three more sources feed `sessionguard explain`, each turned into the same
`Explained` the checker path builds, so one renderer draws them all:

* a run of the asyncio adapter that `sessionguard explore` found: a replay token,
  a replay file (`explore --save`), or the output of `explore --format json`.
  The schedule is replayed under the controlled loop with refinement on, the
  adapter is observed after every loop step, and `explain.from_observed_run`
  rebuilds the model path the run took;
* a bounded-model-checking counterexample of `sessionguard prove` (run here, or
  read from `prove --format json`).  Its abstract states are lifted back to the
  model: from the initial state, each step must be a model transition whose
  abstraction is the next abstract state, so the picture is of a real model path.

`load` tells the kinds of file apart and says which kinds it reads when a file
is none of them.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from sessionguard.explain import (
    ACCEPTED,
    Explained,
    ExplainError,
    ObservedStep,
    bounds_args,
    from_data,
    from_observed_run,
    judge,
    path_to,
    read_json,
    violating_step,
)
from sessionguard.model import BY_NAME, DESIGNS, Bounds
from sessionguard.model.vocabulary import FAULTS, KINDS, State, Trace

# --- runs of the asyncio adapter ----------------------------------------------------------


def observe_schedule(design: str, scenario: Any, schedule: Any) -> tuple[Any, list[ObservedStep]]:
    """Replay `schedule` with refinement on; the run's result and every loop step as observed."""
    from sessionguard.loop import replay
    from sessionguard.loop.controlled import add_observer
    from sessionguard.reference.harness import Rig, scenario_run

    steps: list[ObservedStep] = []

    def watch(rig: Rig) -> None:
        refinement = rig.refinement
        assert refinement is not None

        def record(step: int, label: str) -> None:
            # Registered after the refinement observer, so its candidates are this
            # step's; they all look the same from outside (that is refinement).
            observed = refinement.index.view(next(iter(refinement.candidates())))
            rules = tuple(refinement.trace[-1][2]) if refinement.trace else ()
            choice = schedule.steps[step][0] if step < len(schedule.steps) else 0
            steps.append(ObservedStep(step, label, observed, choice, rules))

        add_observer(record)

    result = replay(scenario_run(design, scenario, on_rig=watch, record=True), schedule)
    return result, steps


def from_schedule(design: str, scenario: Any, schedule: Any, *, prop: str | None, source: str) -> Explained:
    """Explain one property a replayed run of the adapter violates (the earliest by default)."""
    from sessionguard.loop.errors import ScheduleVersionError
    from sessionguard.reference.harness import findings_of, mismatch_of

    if not isinstance(design, str) or design not in DESIGNS:
        raise ExplainError(f"unknown design {design!r} in the run: use one of {', '.join(DESIGNS)}")
    try:
        schedule.check_version()
    except ScheduleVersionError as exc:
        raise ExplainError(str(exc)) from None
    result, steps = observe_schedule(design, scenario, schedule)
    mismatch = mismatch_of(result)
    if mismatch is not None:
        raise ExplainError(
            f"the run does not refine the model (loop step {mismatch.step}, {mismatch.label}): "
            "'sessionguard replay' tells the mismatch; explain draws property violations"
        )
    findings = findings_of(result)
    if not findings and result.verdict != "ok":
        raise ExplainError(
            f"the run of {design} / {scenario.name} ended with verdict {result.verdict!r} and violates no property: "
            "'sessionguard replay' tells what happened"
        )
    if not findings:
        raise ExplainError(f"the run of {design} / {scenario.name} violates no property: there is nothing to explain")
    if prop is None:
        prop = min(findings.values(), key=lambda f: (f.step, BY_NAME[f.prop].number)).prop
    elif prop not in findings:
        raise ExplainError(f"the run does not violate {prop}; it violates {', '.join(sorted(findings))}: choose one with --property")
    also = [f"{name}: {f.why}" for name, f in sorted(findings.items()) if name != prop]
    fifo = "in asyncio's own FIFO order" if schedule.deviations == 0 else f"with {schedule.deviations} deviation(s) from FIFO"
    origin = f"in the asyncio adapter of {design}, scenario {scenario.name} ({scenario.describe()}), {fifo}"
    return from_observed_run(
        design,
        scenario.bounds(),
        steps,
        findings[prop],
        source=f"{source} --property {prop}",
        origin=origin,
        also=also,
    )


def from_token(token: str, *, prop: str | None = None) -> Explained:
    """Explain the run a replay token of `sessionguard explore` names."""
    from sessionguard.loop.errors import ScheduleVersionError
    from sessionguard.reference.harness import decode_token

    try:
        design, scenario, schedule = decode_token(token)
    except ScheduleVersionError as exc:
        raise ExplainError(f"--token: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ExplainError(f"--token: {exc}: copy the whole token that 'sessionguard explore' printed") from None
    return from_schedule(design, scenario, schedule, prop=prop, source=f"sessionguard explain --token {token}")


def _replay_file(data: Any, path: str, prop: str | None) -> Explained:
    from sessionguard.reference.harness import load_document

    try:
        design, scenario, schedule = load_document(data)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ExplainError(f"{path}: a broken replay file ({exc}); save it again with 'sessionguard explore --save'") from None
    return from_schedule(design, scenario, schedule, prop=prop, source=f"sessionguard explain --from {path}")


def _explore_output(data: list[Any], path: str, design: str | None, scenario: str | None, prop: str | None) -> Explained:
    """The first failure of one scenario of `sessionguard explore --format json`."""
    found = [
        e
        for e in data
        if isinstance(e, dict)
        and isinstance(e.get("failure"), dict)
        and (design is None or e.get("design") == design)
        and (scenario is None or e.get("scenario") == scenario)
        and (prop is None or prop in e["failure"].get("properties", {}))
    ]
    what = " / ".join(x for x in (design, scenario, prop) if x) or "any scenario"
    if not found:
        raise ExplainError(f"{path}: no failure for {what} in the explore output")
    if len(found) > 1:
        names = ", ".join(str(e.get("scenario")) for e in found)
        raise ExplainError(f"{path}: failures in {len(found)} scenarios ({names}): choose one with --scenario")
    replay = str(found[0]["failure"].get("replay", ""))
    try:
        words = shlex.split(replay)
    except ValueError:
        words = []
    if words[:3] == ["sessionguard", "replay", "--token"] and len(words) == 4:
        ex = from_token(words[3], prop=prop)
    elif words[:2] == ["sessionguard", "replay"] and len(words) == 3:
        saved = Path(words[2])
        if not saved.is_absolute() and not saved.exists():
            saved = Path(path).parent / saved
        if not saved.exists():
            raise ExplainError(f"{path}: its failure was saved to {words[2]}, which is missing; explain that file, or re-run explore without --save")
        ex = _replay_file(read_json(str(saved)), str(saved), prop)
    else:
        raise ExplainError(f"{path}: the failure has no replay command; re-run 'sessionguard explore --format json'")
    ex.source = f"sessionguard explain --from {path} --scenario {found[0].get('scenario')} --property {ex.prop.name}"
    return ex


# --- z3 counterexamples -------------------------------------------------------------------


def from_prove(design: str, prop: str, *, depth: int = 10, timeout: float = 60.0) -> Explained:
    """Run `sessionguard prove` for one property and explain its counterexample."""
    from sessionguard.proofs.prove import COUNTEREXAMPLE, prove

    if design not in DESIGNS:
        raise ExplainError(f"unknown design {design!r}: use one of {', '.join(DESIGNS)}")
    if prop not in BY_NAME:
        raise ExplainError(f"unknown property {prop!r}: use one of {', '.join(BY_NAME)}")
    result = prove(design, [prop], depth=depth, timeout=timeout).results[0]
    if result.status != COUNTEREXAMPLE or result.trace is None:
        why = f" ({result.detail})" if result.detail else ""
        raise ExplainError(f"prove: {design}/{prop} is {result.status}{why}: there is no counterexample to explain")
    return from_abstract_trace(
        design, prop, result.trace.states, where=f"prove {design}/{prop}",
        source=f"sessionguard explain --prove --design {design} --property {prop} --depth {depth}",
    )


def from_abstract_trace(design: str, prop: str, states: list[dict[str, Any]], *, where: str, source: str) -> Explained:
    """Lift a z3 trace (abstract states, `proofs/encoding.py`) to a path through the model."""
    from sessionguard.proofs.abstraction import alpha, canonical, key
    from sessionguard.proofs.encoding import FIELDS, default_state

    d = DESIGNS[design]
    p = BY_NAME[prop]
    wanted = []
    for n, raw in enumerate(states):
        full = default_state()
        unknown = set(raw) - {f for f, _ in FIELDS} - {f for f in raw if f.startswith("v_")}
        if unknown:
            raise ExplainError(f"{where}: state {n} has fields the encoding does not know ({', '.join(sorted(unknown))}); re-run prove")
        full.update({f: v for f, v in raw.items() if not f.startswith("v_")})
        wanted.append(key(canonical(full), flags=False))
    if len(wanted) < 2:
        raise ExplainError(f"{where}: the trace has no step")
    end = dict(default_state(), **{f: v for f, v in states[-1].items() if not f.startswith("v_")})
    bounds = Bounds(messages=max(1, int(end["nmsg"])), faults=int(end["nf"]), sessions=1, kinds=KINDS, fault_kinds=FAULTS)
    start = d.initial(bounds)
    if key(alpha(start, design), flags=False) != wanted[0]:
        raise ExplainError(f"{where}: the trace does not start in the initial state")
    layer: dict[State, Any] = {start: None}
    layers = [layer]
    for n, want in enumerate(wanted[1:], 1):
        new: dict[State, Any] = {}
        for s in layer:
            for step, t in d.successors(s, bounds):
                if t not in new and key(alpha(t, design), flags=False) == want:
                    new[t] = (s, s, step)
        if not new:
            raise ExplainError(f"{where}: step {n} of the z3 trace is no step of the model of {design}")
        layers.append(new)
        layer = new
    for end_state in layer:  # a path whose end the property (judged on the model) fails at
        trace = path_to(layers, end_state)
        try:
            condition = judge(d, bounds, p, trace, stored=_stuck(d, trace), where=where)
        except ExplainError:
            continue
        return Explained(
            design,
            bounds,
            p,
            condition,
            trace,
            violating_step(d, bounds, p, trace),
            source=source,
            origin=f"by z3 (sessionguard prove, bounded model checking), replayed in the model at {bounds_args(bounds)}",
        )
    raise ExplainError(f"{where}: the trace replays in the model, but {prop} holds at its end; re-run prove")


def _stuck(design: Any, trace: Trace) -> str | None:
    from sessionguard.model.checker import unsettled

    return unsettled(design, trace.states[-1], True)


def _prove_report(data: dict[str, Any], path: str, design: str | None, prop: str | None) -> Explained:
    found = []
    for r in data["reports"]:
        if not isinstance(r, dict) or not isinstance(r.get("results"), list):
            raise ExplainError(f"{path}: a prove report without a 'results' list")
        if r.get("mutation"):
            continue  # a weakened design has no model to replay in
        if design is not None and r.get("design") != design:
            continue
        for x in r["results"]:
            if isinstance(x, dict) and x.get("trace") and (prop is None or x.get("property") == prop):
                found.append((r.get("design"), x))
    what = "/".join(x for x in (design, prop) if x) or "any property"
    if not found:
        raise ExplainError(f"{path}: no counterexample for {what} in the prove report")
    if len(found) > 1:
        names = ", ".join(f"{d}/{x.get('property')}" for d, x in found)
        raise ExplainError(f"{path}: {len(found)} counterexamples ({names}): choose one with --design and --property")
    name, x = found[0]
    pname = x.get("property")
    if not isinstance(name, str) or not isinstance(pname, str) or name not in DESIGNS or pname not in BY_NAME:
        raise ExplainError(f"{path}: unknown design or property ({name}/{pname}) in the prove report")
    states = x["trace"].get("states") if isinstance(x["trace"], dict) else None
    if not isinstance(states, list) or not all(isinstance(s, dict) for s in states):
        raise ExplainError(f"{path}: the counterexample has no states; re-run 'sessionguard prove --format json'")
    return from_abstract_trace(
        str(name), str(pname), states, where=f"{path}: {name}/{pname}",
        source=f"sessionguard explain --from {path} --design {name} --property {pname}",
    )


# --- telling files apart ---------------------------------------------------------------------


def kind_of(data: Any) -> str | None:
    """Which kind of file this is: check, prove, replay, explore (None: none of them)."""
    if isinstance(data, dict) and isinstance(data.get("reports"), list) and data["reports"]:
        first = data["reports"][0]
        if isinstance(first, dict) and "verdicts" in first:
            return "check"
        if isinstance(first, dict) and "results" in first:
            return "prove"
    if isinstance(data, dict) and {"design", "scenario", "schedule"} <= set(data):
        return "replay"
    if isinstance(data, list) and data and all(isinstance(e, dict) and {"scenario", "strategy"} <= set(e) for e in data):
        return "explore"
    return None


def load(path: str, *, design: str | None = None, prop: str | None = None, scenario: str | None = None) -> Explained:
    """Explain the counterexample of a saved file, whichever kind of file it is."""
    data = read_json(path)
    kind = kind_of(data)
    if kind is None:
        raise ExplainError(f"{path}: not a file explain reads; {ACCEPTED}")
    if scenario is not None and kind != "explore":
        raise ExplainError(f"{path}: --scenario chooses among the scenarios of an explore output, and this is a {kind} file; drop it")
    if kind == "check":
        return from_data(data, path, design=design, prop=prop)
    if kind == "prove":
        return _prove_report(data, path, design, prop)
    if design is not None and kind == "replay" and data.get("design") != design:
        raise ExplainError(f"{path}: the run is of design {data.get('design')!r}, not {design!r}; drop --design")
    if kind == "replay":
        return _replay_file(data, path, prop)
    return _explore_output(data, path, design, scenario, prop)
