"""Explain a counterexample: a sequence diagram, a narrative and a table of state.

A counterexample comes from the checker (a design, a property and a bound), a
saved report (`sessionguard check --format json`), or, through
`explain_runs.py`, a z3 trace or a run of an adapter.  A saved trace is never
trusted: it is replayed, step by step, through the current rules of the
model, and the property is judged again at its end, so every picture this
module draws is of a real path through the model.  A run of an adapter is
given as what was observed after each loop step (`from_observed_run`); the
model path it took is rebuilt from those observations, and each step keeps
its loop step, its lane and whether the schedule left asyncio's order there.

One diagram model (`diagram`) is drawn three ways: as Mermaid source for
Markdown (code hosts render it), as a lane chart for a terminal, and as inline
SVG for the HTML report (`explain_html.py`).  The narrative is the model's own
(`model.narrative.narrate`), with the violating step marked.

The docs (`docs/tutorial.md`, `docs/explained.md`) are generated from real
counterexamples by `python -m sessionguard.tutorial`; see that module.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sessionguard.model import BY_NAME, DESIGNS, Bounds, CheckerConfig, Design, Property, check
from sessionguard.model.checker import VIOLATED, has_hang, is_internal, recovery_start, unsettled
from sessionguard.model.narrative import actor_name, changes, narrate, session_view, task_name
from sessionguard.model.properties import Invariant, Liveness, StepInvariant
from sessionguard.model.vocabulary import (
    B_RUNNER,
    B_SEND,
    C_AWAIT,
    C_RUNNER,
    C_SEND,
    HOOKS,
    INBAND,
    REAP,
    RUNNER,
    SEND_ERROR,
    SEND_REPLY,
    START,
    TYPING,
    State,
    Step,
    Trace,
)

if TYPE_CHECKING:
    from sessionguard.reference.refinement import Finding


class ExplainError(Exception):
    """The counterexample cannot be explained: bad input, told in one line."""


@dataclass(frozen=True)
class RunNote:
    """Where one model step of an observed run happened in the running code."""

    loop_step: int  # the controlled loop's step number
    label: str  # the lane that ran: a task ("T3:process-k0") or a callback
    choice: int = 0  # 0: asyncio's own FIFO order; n > 0: the schedule picked the n-th ready lane
    unseen: int = 0  # loop steps since the previous model step that the model does not see
    unseen_deviated: int = 0  # how many of those the schedule took out of FIFO order
    last: int | None = None  # several model steps of one task summarised: the loop step of the last

    @property
    def deviated(self) -> bool:
        return self.choice != 0


@dataclass
class Explained:
    """A counterexample, replayed, with the step at which its property fails."""

    design: str
    bounds: Bounds
    prop: Property
    condition: str
    trace: Trace
    violating: int  # index into trace.steps of the step to highlight
    source: str = ""  # how to reproduce it
    #: Where the counterexample comes from, in words, when it is not the checker at a
    #: bound (an asyncio run, a z3 trace); empty: the checker.
    origin: str = ""
    #: For a run of the implementation: one note per step of `trace`.
    notes: list[RunNote] | None = None
    #: Other properties the same run violated, each "name: condition".
    also: list[str] = field(default_factory=list)
    #: Steps of the run that are not shown, in words (empty: nothing left out).
    left_out: str = ""

    @property
    def liveness(self) -> bool:
        return isinstance(self.prop, Liveness)

    @property
    def scope(self) -> str:
        """Where the counterexample lives: the checker's bound, or its origin."""
        return f", found {self.origin}" if self.origin else f" at {bounds_args(self.bounds)}"

    def note(self, i: int) -> RunNote | None:
        return self.notes[i] if self.notes is not None and i < len(self.notes) else None


# --- getting a counterexample ------------------------------------------------------------


def bounds_args(b: Bounds) -> str:
    """The command-line options that give bound `b`."""
    text = f"--messages {b.messages} --faults {b.faults}"
    if b.sessions != 1:
        text += f" --sessions {b.sessions}"
    if b.kinds != Bounds().kinds:
        text += f" --kinds {','.join(b.kinds)}"
    if b.fault_kinds != Bounds().fault_kinds:
        text += f" --fault-kinds {','.join(b.fault_kinds)}"
    return text


def finding_bounds(design: str, prop: str) -> Bounds | None:
    """The bound at which docs/findings.md tells this finding, if it does."""
    from sessionguard.findings import FINDINGS

    for f in FINDINGS:
        if (f.design, f.prop) == (design, prop):
            return f.bounds
    return None


def from_checker(design: str, prop: str, bounds: Bounds) -> Explained:
    """Run the checker and explain its shortest counterexample for `prop`."""
    if design not in DESIGNS:
        raise ExplainError(f"unknown design {design!r}: use one of {', '.join(DESIGNS)}")
    if prop not in BY_NAME:
        raise ExplainError(f"unknown property {prop!r}: use one of {', '.join(BY_NAME)}")
    report = check(DESIGNS[design], bounds, CheckerConfig(properties=(BY_NAME[prop],)))
    return from_verdict(design, bounds, report.verdicts[0])


def from_verdict(design: str, bounds: Bounds, v: Any) -> Explained:
    where = f"{design}/{v.prop.name} at {bounds_args(bounds)}"
    if v.status != VIOLATED or v.trace is None:
        raise ExplainError(f"{where}: the property {v.status}, there is no counterexample to explain")
    d = DESIGNS[design]
    trace: Trace = v.trace
    return Explained(
        design,
        bounds,
        v.prop,
        v.condition or "",
        trace,
        violating_step(d, bounds, v.prop, trace),
        source=f"sessionguard explain --design {design} --property {v.prop.name} {bounds_args(bounds)}",
    )


#: The kinds of file `--from` reads, for the error that names them.
ACCEPTED = (
    "give a 'sessionguard check --format json' or 'sessionguard prove --format json' report, "
    "a replay file of 'sessionguard explore --save', or the output of 'sessionguard explore --format json'"
)


def read_json(path: str) -> Any:
    """A saved file of any kind `--from` reads, parsed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExplainError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExplainError(f"{path}: cannot read it ({exc.__class__.__name__})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExplainError(f"{path}: not JSON (line {exc.lineno}: {exc.msg}); {ACCEPTED}") from None


def _bounds_from(path: str, raw: Any) -> Bounds:
    if not isinstance(raw, dict):
        raise ExplainError(f"{path}: a report has no 'bounds' object")
    try:
        return Bounds(
            messages=int(raw["messages"]),
            faults=int(raw["faults"]),
            sessions=int(raw.get("sessions", 1)),
            kinds=tuple(raw.get("kinds", Bounds().kinds)),
            fault_kinds=tuple(raw.get("fault_kinds", Bounds().fault_kinds)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ExplainError(f"{path}: bad 'bounds' in a report ({exc})") from None


def from_file(path: str, *, design: str | None = None, prop: str | None = None, scenario: str | None = None) -> Explained:
    """Explain the counterexample of a saved file of any kind `--from` reads (see `explain_runs.load`)."""
    from sessionguard.explain_runs import load

    return load(path, design=design, prop=prop, scenario=scenario)


def from_data(data: dict[str, Any], path: str, *, design: str | None = None, prop: str | None = None) -> Explained:
    """Explain a counterexample of a loaded `check --format json` report (`path` only names it in errors)."""
    if prop is not None and prop not in BY_NAME:
        raise ExplainError(f"unknown property {prop!r}: use one of {', '.join(BY_NAME)}")
    found: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for r in data["reports"]:
        if not isinstance(r, dict) or not isinstance(r.get("verdicts"), list):
            raise ExplainError(f"{path}: a report without a 'verdicts' list")
        name = r.get("design")
        if not isinstance(name, str) or name not in DESIGNS:
            raise ExplainError(f"{path}: unknown design {name!r} in the file")
        if design is not None and name != design:
            continue
        for v in r["verdicts"]:
            if not isinstance(v, dict):
                raise ExplainError(f"{path}: a verdict that is not an object")
            if v.get("trace") and (prop is None or v.get("property") == prop):
                found.append((str(name), r, v))
    what = "/".join(x for x in (design, prop) if x) or "any property"
    if not found:
        raise ExplainError(f"{path}: no counterexample for {what} in the file")
    if len(found) > 1:
        names = ", ".join(f"{d}/{v.get('property')}" for d, _, v in found)
        raise ExplainError(f"{path}: {len(found)} counterexamples ({names}): choose one with --design and --property")
    name, r, v = found[0]
    pname = v.get("property")
    if not isinstance(pname, str) or pname not in BY_NAME:
        raise ExplainError(f"{path}: unknown property {pname!r} in the file")
    bounds = _bounds_from(path, r.get("bounds"))
    d = DESIGNS[name]
    trace = replay(d, bounds, v["trace"], where=f"{path}: {name}/{pname}")
    p = BY_NAME[pname]
    condition = judge(d, bounds, p, trace, stored=v.get("condition"), where=f"{path}: {name}/{pname}")
    return Explained(
        name,
        bounds,
        p,
        condition,
        trace,
        violating_step(d, bounds, p, trace),
        source=f"sessionguard explain --from {path} --design {name} --property {pname}",
    )


def _key(before: State, step: Step, after: State) -> tuple[object, ...]:
    return (actor_name(before, step.actor), step.rule, step.detail, step.fault, changes(before, after))


def replay(design: Design, bounds: Bounds, steps: Any, *, where: str = "trace") -> Trace:
    """Follow saved steps (as `trace_to_json` wrote them) through the current rules."""
    if not isinstance(steps, list) or not steps:
        raise ExplainError(f"{where}: the trace is not a list of steps")
    state = design.initial(bounds)
    trace = Trace(states=[state], steps=[])
    for n, want in enumerate(steps, 1):
        if not isinstance(want, dict) or not {"actor", "rule", "detail", "changes"} <= set(want):
            raise ExplainError(f"{where}: step {n} is malformed (needs actor, rule, detail, changes)")
        key = (want["actor"], want["rule"], want["detail"], want.get("fault"), list(want["changes"]))
        starts = [(state, True)]
        if has_hang(state, design.bounded_awaits) and state.extra == 0:
            # The liveness check's recovery: the user may send /stop where a call hangs.
            starts.append((recovery_start(state, design.bounded_awaits), False))
        for start, faults in starts:
            match = next(
                ((st, nxt) for st, nxt in design.successors(start, bounds, faults=faults) if _key(start, st, nxt) == key),
                None,
            )
            if match is not None:
                trace.states[-1] = start
                trace.steps.append(match[0])
                trace.states.append(match[1])
                state = match[1]
                break
        else:
            text = want.get("text") or f"{want['actor']} {want['rule']}"
            raise ExplainError(
                f"{where}: step {n} ({text}) does not replay on the current model of {design.name}; "
                "re-run 'sessionguard check --format json'"
            )
    return trace


def judge(design: Design, bounds: Bounds, prop: Property, trace: Trace, *, stored: Any, where: str) -> str:
    """The condition that fails at the end of a replayed trace (raises if none does)."""
    why: str | None
    if isinstance(prop, Invariant):
        why = prop.check(trace.states[-1])
    elif isinstance(prop, StepInvariant):
        why = prop.check(trace.states[-2], trace.steps[-1], trace.states[-1])
    else:
        settles = [_settles(design, bounds, s) for s in trace.states]
        why = None if all(settles) else (str(stored) if stored else "the session can no longer settle")
    if why is None:
        raise ExplainError(f"{where}: the trace replays, but {prop.name} holds at its end; re-run the check")
    return why


def _settles(design: Design, bounds: Bounds, state: State, limit: int = 200_000) -> bool:
    """Can `state` still reach a settled state (liveness, as the checker judges it)?"""
    if _reaches_settled(design, bounds, [state], internal_only=True, limit=limit):
        return True
    if has_hang(state, design.bounded_awaits):
        start = recovery_start(state, design.bounded_awaits)
        return _reaches_settled(design, bounds, [start], internal_only=False, limit=limit)
    return False


def _reaches_settled(design: Design, bounds: Bounds, starts: list[State], *, internal_only: bool, limit: int) -> bool:
    seen = set(starts)
    todo = deque(starts)
    while todo and len(seen) < limit:
        s = todo.popleft()
        succ = design.successors(s, bounds, faults=False)
        if internal_only:
            succ = [(st, t) for st, t in succ if is_internal(st)]
        if unsettled(design, s, not any(is_internal(st) for st, _ in succ)) is None:
            return True
        for _, t in succ:
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return False


def violating_step(design: Design, bounds: Bounds, prop: Property, trace: Trace) -> int:
    """The step to highlight: the last one for a safety property; for liveness,
    the step after which the session can no longer settle (the point of no return)."""
    last = len(trace.steps) - 1
    if not isinstance(prop, Liveness):
        return last
    for i, s in enumerate(trace.states):
        if i > 0 and not _settles(design, bounds, s):
            return i - 1
    return last


# --- a run of the implementation, as observed -----------------------------------------------


@dataclass(frozen=True)
class ObservedStep:
    """One loop step of a run of an adapter, as observed (the input of `from_observed_run`)."""

    loop_step: int
    label: str
    #: The adapter after the step, written as a model state in the projected form of
    #: `sessionguard.reference.refinement.observe` (guards by identity, owners, pending
    #: slots, the runner's record, where each task and handler waits, message fates).
    observed: State
    choice: int = 0
    #: The model transitions refinement matched for this step (as `Refinement.trace`
    #: writes them); optional: when several model steps fit, one of these is preferred.
    rules: tuple[str, ...] = ()


def from_observed_run(
    design: str,
    bounds: Bounds,
    steps: list[ObservedStep],
    finding: Finding,
    *,
    source: str = "",
    origin: str = "",
    also: list[str] | None = None,
) -> Explained:
    """Explain a property violation of a running adapter from what was observed at each step.

    What a run must provide (an asyncio exploration, a conformance run against
    another adapter, anything that can observe the adapter after each step):

    * `design` and `bounds`: the model design the run is checked against and the
      bounds that cover its inputs (a scenario's `bounds()`);
    * `steps`: every loop step in order, each an `ObservedStep` with the loop step
      number, the label of what ran, the observed state after it, the schedule's
      choice there (0 when it followed asyncio's FIFO order) and, optionally, the
      rules refinement matched.  A step whose observation equals the previous one
      is a step the model does not see: it is collapsed into the next model step;
    * `finding`: the property violated, at which loop step, and the condition that
      failed (a `Finding` of `Refinement.findings`; for a liveness finding at the
      end of the run, a step number past the last step).

    The model path is rebuilt here: from the design's initial state, each observed
    change must be a model transition, as refinement checks it (past the run's
    input, where a call hangs, the user's recovery /stop is allowed, as in the
    model's liveness check).  The path is cut at the finding's step, summarised
    (`summarise`, and a start after which everything was over is told in one
    line) and drawn by the same renderers as a checker counterexample, each step
    noted with its loop step and whether the schedule deviated from FIFO there.
    """
    from sessionguard.model.properties import hung_sessions
    from sessionguard.reference.refinement import model_index

    if design not in DESIGNS:
        raise ExplainError(f"unknown design {design!r}: use one of {', '.join(DESIGNS)}")
    if finding.prop not in BY_NAME:
        raise ExplainError(f"unknown property {finding.prop!r} in the run: use one of {', '.join(BY_NAME)}")
    d = DESIGNS[design]
    prop = BY_NAME[finding.prop]
    index = model_index(d, bounds)
    start = d.initial(bounds)
    # Each layer: the model states consistent with everything observed so far, each
    # with one way it was reached (the state before the step, and the step).
    layer: dict[State, Any] = {start: None}
    layers = [layer]
    notes: list[RunNote] = []
    last = index.view(start)
    unseen = unseen_deviated = 0
    for st in steps:
        if st.loop_step > finding.step:
            break
        if st.observed == last:
            unseen += 1
            unseen_deviated += st.choice != 0
            continue
        new = _follow(index, layer, st)
        if not new:  # past the scenario's input, where a call hangs: the user's recovery /stop (SPEC 9, 10)
            recovered = {}
            for s in layer:
                hung = len(hung_sessions(s, d.bounded_awaits))
                if hung:
                    recovered[s] = s._replace(extra=s.extra + hung)
            new = _follow(index, layer, st, recovered)
        if not new:
            raise ExplainError(
                f"loop step {st.loop_step} ({st.label}) is not a step of the model of {design}; "
                "replay the run with 'sessionguard replay' to see the refinement mismatch"
            )
        layers.append(new)
        layer = new
        notes.append(RunNote(st.loop_step, st.label, st.choice, unseen, unseen_deviated))
        unseen = unseen_deviated = 0
        last = st.observed
    if not notes:
        raise ExplainError(f"the run has no model step up to loop step {finding.step}, where {finding.prop} fails")
    trace = _path_back(layers, prop)
    trace, notes, elsewhere = _focus(d, bounds, prop, trace, notes, finding.why)
    trace, notes = summarise(trace, notes)
    trace, notes, earlier = _skip_settled_start(trace, notes)
    return Explained(
        design,
        bounds,
        prop,
        finding.why,
        trace,
        violating_step(d, bounds, prop, trace),
        source=source,
        origin=origin,
        notes=notes,
        also=list(also or []),
        left_out="; ".join(x for x in (earlier, elsewhere) if x),
    )


def _session_of(trace: Trace, i: int) -> int | None:
    """The session step `i` acts in (None: every session, as a shutdown does)."""
    step, before, after = trace.steps[i], trace.states[i], trace.states[i + 1]
    if step.actor == "platform" and step.message is not None:
        return after.messages[step.message].session
    actor = step.actor
    if step.actor == "environment" and step.rule == "cancel-task":
        actor = step.detail.split()[0]
    if actor.startswith("T") and actor[1:].isdigit():
        return next((t.session for t in before.tasks if t.tid == int(actor[1:])), None)
    if actor.startswith("H") and actor[1:].isdigit():
        return before.messages[int(actor[1:])].session
    return None


def _focus(
    design: Design, bounds: Bounds, prop: Property, trace: Trace, notes: list[RunNote], condition: str
) -> tuple[Trace, list[RunNote], str]:
    """With several sessions, leave out what the tasks and handlers of the other sessions did.

    Sessions share nothing but shutdown, so those steps commute with the failing
    session's.  The shorter path is not assumed to be one: it is replayed through
    the model (every message still arrives where it did, so no name changes) and
    the property judged again at its end; if either fails, the run is told whole.
    """
    if len(trace.states[0].sessions) < 2 or not trace.steps:
        return trace, notes, ""
    k = _session_of(trace, len(trace.steps) - 1)
    if k is None:
        return trace, notes, ""
    keep = [
        i for i in range(len(trace.steps))
        if trace.steps[i].actor == "platform" or _session_of(trace, i) in (k, None)
    ]
    if len(keep) == len(trace.steps):
        return trace, notes, ""
    state = trace.states[0]
    short = Trace(states=[state], steps=[])
    for i in keep:
        want = _key(trace.states[i], trace.steps[i], trace.states[i + 1])
        start = state._replace(extra=trace.states[i].extra)  # the recovery /stops allowed there
        match = next(((st, t) for st, t in design.successors(start, bounds) if _key(start, st, t) == want), None)
        if match is None:
            return trace, notes, ""
        short.states[-1] = start
        short.steps.append(match[0])
        short.states.append(match[1])
        state = match[1]
    try:
        judge(design, bounds, prop, short, stored=condition, where="the run")
    except ExplainError:
        return trace, notes, ""
    left = len(trace.steps) - len(keep)
    told = f"{left} steps of the tasks and handlers of sessions other than k{k} (sessions share nothing but shutdown)"
    return short, [notes[i] for i in keep], told


def _settled_idle(state: State) -> bool:
    """Nothing in flight, every record empty, every message so far ended exactly once."""
    return (
        not state.tasks
        and not state.handlers
        and not state.stopped
        and all(s.guard is None and s.owner is None and s.pending is None and s.runner is None for s in state.sessions)
        and all(m.fate is not None and m.runs <= 1 for m in state.messages)
    )


def _skip_settled_start(trace: Trace, notes: list[RunNote]) -> tuple[Trace, list[RunNote], str]:
    """Leave out a start of the run after which everything was over and the sessions idle.

    What came before such a point cannot matter to what goes wrong after it (no
    record, task or unfinished message carries over), so it is told in one line.
    """
    cut = max((i for i in range(1, len(trace.states) - 1) if _settled_idle(trace.states[i])), default=0)
    if cut == 0:
        return trace, notes, ""
    state = trace.states[cut]
    told = ", ".join(f"m{m} {msg.kind} {msg.fate}" for m, msg in enumerate(state.messages))
    earlier = (
        f"the first {cut} model steps (loop steps {notes[0].loop_step} to "
        f"{notes[cut - 1].last or notes[cut - 1].loop_step}), after which nothing was in flight ({told})"
    )
    return Trace(states=trace.states[cut:], steps=trace.steps[cut:]), notes[cut:], earlier


def summarise(trace: Trace, notes: list[RunNote]) -> tuple[Trace, list[RunNote]]:
    """Join consecutive steps of one task or handler into one step, to keep a run on one screen.

    A step joins the one before it when the same actor takes both, neither is a
    fault nor a deviation from FIFO, and at most one of the two changed any of
    G, O, P, R: so each record change still has its own row, and every point
    where control changed hands (an await the diagram marks) is kept.  The joined
    step's rule chains the rules (`a, then b`), as the model's own steps do.
    """
    states, steps = [trace.states[0]], list[Step]()
    out: list[RunNote] = []
    for i, step in enumerate(trace.steps):
        before, after = trace.states[i], trace.states[i + 1]
        note = notes[i]
        if steps:
            prev, prev_before, prev_note = steps[-1], states[-2], out[-1]
            same = actor_name(prev_before, prev.actor) == actor_name(before, step.actor)
            quiet = not (_records_changed(prev_before, before) and _records_changed(before, after))
            plain = not (prev.fault or step.fault or prev_note.deviated or note.deviated)
            if same and quiet and plain and step.actor not in ("platform", "environment"):
                steps[-1] = Step(prev.actor, f"{prev.rule}, then {step.rule}", prev.detail, None, prev.message,
                                 prev.effects + step.effects)
                states[-1] = after
                out[-1] = replace(
                    prev_note,
                    unseen=prev_note.unseen + note.unseen,
                    unseen_deviated=prev_note.unseen_deviated + note.unseen_deviated,
                    last=note.loop_step,
                )
                continue
        steps.append(step)
        states.append(after)
        out.append(note)
    return Trace(states=states, steps=steps), out


def _follow(
    index: Any, layer: dict[State, Any], st: ObservedStep, recovered: dict[State, State] | None = None
) -> dict[State, tuple[State, State, Step]]:
    """The successors of a layer whose observable part is `st.observed`."""
    new: dict[State, tuple[State, State, Step]] = {}
    for s in layer:
        before = s if recovered is None else recovered.get(s)
        if before is None:
            continue
        for step, t, view in index.successors(before):
            if view != st.observed:
                continue
            if t not in new or (_said(step) in st.rules and _said(new[t][2]) not in st.rules):
                new[t] = (s, before, step)
    return new


def _said(step: Step) -> str:
    """A model step as `Refinement.trace` writes it."""
    return f"{step}" + (f" [fault: {step.fault}]" if step.fault else "")


def _path_back(layers: list[dict[State, Any]], prop: Property) -> Trace:
    """One model path through the layers, ending where the property fails if one does."""

    def fails(t: State) -> bool:
        if isinstance(prop, Invariant):
            return prop.check(t) is not None
        if isinstance(prop, StepInvariant):
            _, before, step = layers[-1][t]
            return prop.check(before, step, t) is not None
        return True

    ends = list(layers[-1])
    return path_to(layers, next((t for t in ends if fails(t)), ends[0]))


def path_to(layers: list[dict[State, Any]], end: State) -> Trace:
    """The model path to `end` through layers of states, each state of a layer mapped to
    how it was reached: (its parent in the layer before, the state the step left from, the step).
    The state a step left from differs from the parent only by recovery /stops allowed."""
    states, taken = [end], []
    state = end
    for layer in reversed(layers[1:]):
        parent, before, step = layer[state]
        states.append(before)
        taken.append(step)
        state = parent
    return Trace(states=states[::-1], steps=taken[::-1])


# --- the diagram model ---------------------------------------------------------------------

PLATFORM, ENV, ADAPTER, RUNNER_P = "platform", "environment", "adapter", "runner"
#: Marks a step of a run where the schedule picked another ready lane than asyncio would.
NOT_FIFO = "⤳ not FIFO"

CALLS_RUNNER = {RUNNER, B_RUNNER, C_RUNNER}
SENDS = {SEND_REPLY, SEND_ERROR, B_SEND, C_SEND}
AWAITS = {
    START: "waits to start",
    RUNNER: "awaits runner",
    SEND_REPLY: "awaits send(reply)",
    INBAND: "awaits in-band cleanup",
    SEND_ERROR: "awaits send(error)",
    TYPING: "awaits cleanup (typing)",
    HOOKS: "awaits cleanup (hooks)",
    REAP: "done, callback pending",
    B_RUNNER: "awaits runner",
    B_SEND: "awaits send(reply)",
    C_RUNNER: "awaits runner(command)",
    C_AWAIT: "awaits the old task's end",
    C_SEND: "awaits send(reply)",
}


@dataclass(frozen=True)
class Participant:
    id: str
    label: str


@dataclass(frozen=True)
class Row:
    """One row of the diagram: an arrow for a step, or a note."""

    kind: str  # "arrow" | "note"
    src: str
    dst: str
    label: str
    step: int  # index of the step it belongs to
    style: str = "call"  # call | return | fault (arrows); await | violation (notes)


@dataclass
class Diagram:
    participants: list[Participant] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    def add(self, pid: str, label: str) -> str:
        if all(p.id != pid for p in self.participants):
            self.participants.append(Participant(pid, label))
        return pid


def _pos(state: State, actor: str) -> str | None:
    """Where a task or handler is suspended in `state` (None if it is gone)."""
    if actor == "T-gone":
        return None
    if actor.startswith("T"):
        tid = int(actor[1:])
        return next((t.pc for t in state.tasks if t.tid == tid), None)
    if actor.startswith("H"):
        mid = int(actor[1:])
        return next((h.pc for h in state.handlers if h.mid == mid), None)
    return None


def _renamed(before: State, after: State, actor: str) -> str:
    """The same task's actor name in `after` (task ids are renumbered in every state)."""
    if not actor.startswith("T"):
        return actor
    name = task_name(before, int(actor[1:]))
    for t in after.tasks:
        if task_name(after, t.tid) == name:
            return f"T{t.tid}"
    return "T-gone"


def _hung(state: State, actor: str) -> bool:
    if actor == "T-gone":
        return False
    if actor.startswith("T"):
        return any(t.tid == int(actor[1:]) and t.hung for t in state.tasks)
    return any(h.mid == int(actor[1:]) and h.hung for h in state.handlers)


def _who(state: State, actor: str) -> tuple[str, str]:
    """A stable participant id and label for a task or handler actor."""
    if actor.startswith("T"):
        name = task_name(state, int(actor[1:]))
        return "T" + name[2:-1].replace("+", "_"), name
    m = int(actor[1:])
    return f"H{m}", f"{state.messages[m].kind} m{m}"


def _short(rule: str) -> str:
    return rule.replace("resumes ", "")


def diagram(ex: Explained) -> Diagram:
    d = Diagram()
    d.add(PLATFORM, "platform")
    if any(s.actor == "environment" for s in ex.trace.steps):
        d.add(ENV, "environment")
    d.add(ADAPTER, "adapter (G/O/P/R)")
    steps, states = ex.trace.steps, ex.trace.states
    ran: list[tuple[str, str] | None] = []  # (participant, raw actor) that ran in each step
    body: list[list[Row]] = []
    for i, step in enumerate(steps):
        before, after = states[i], states[i + 1]
        rows: list[Row] = []
        if step.actor == "platform":
            m = step.message if step.message is not None else len(before.messages)
            kind = after.messages[m].kind
            label = f"m{m} {kind}: {step.rule}"
            if len(after.sessions) > 1:
                label = f"m{m} {kind} (k{after.messages[m].session}): {step.rule}"
            if any(h.mid == m for h in after.handlers):
                pid, name = _who(after, f"H{m}")
                rows.append(Row("arrow", PLATFORM, d.add(pid, name), label, i))
                ran.append((pid, f"H{m}"))
            else:
                rows.append(Row("arrow", PLATFORM, ADAPTER, label, i))
                ran.append(None)
        elif step.actor == "environment":
            if step.rule == "cancel-task":
                tid = int(step.detail.split()[0][1:])
                pid, name = _who(before, f"T{tid}")
                rows.append(Row("arrow", ENV, d.add(pid, name), f"cancel {name} [fault]", i, "fault"))
            else:
                rows.append(Row("arrow", ENV, ADAPTER, f"{step.rule} [fault]", i, "fault"))
            ran.append(None)
        else:
            pid, name = _who(before, step.actor)
            d.add(pid, name)
            pc = _pos(before, step.actor) or ""
            party = RUNNER_P if pc in CALLS_RUNNER else PLATFORM if pc in SENDS else pid
            if party == RUNNER_P:
                d.add(RUNNER_P, "runner")
            label = _short(step.rule)
            if step.fault:
                rows.append(Row("arrow", party, pid, f"{label} [{step.fault}]", i, "fault"))
            else:
                now = _pos(after, _renamed(before, after, step.actor))
                if now in CALLS_RUNNER:
                    rows.append(Row("arrow", pid, d.add(RUNNER_P, "runner"), label, i))
                elif now in SENDS:
                    rows.append(Row("arrow", pid, PLATFORM, label, i))
                elif _records_changed(before, after):
                    rows.append(Row("arrow", pid, ADAPTER, label, i))
                else:
                    rows.append(Row("arrow", pid, pid, label, i, "return"))
            ran.append((pid, _renamed(before, after, step.actor)))
        if any(e and e[0] == "run" for e in step.effects):
            d.add(RUNNER_P, "runner")
        old_names = {task_name(before, t.tid) for t in before.tasks}
        for t in after.tasks:  # tasks take their place when they are created
            if task_name(after, t.tid) not in old_names:
                d.add(*_who(after, f"T{t.tid}"))
        note = ex.note(i)
        if note is not None and note.deviated:
            rows = [replace(r, label=f"{r.label} {NOT_FIFO}") if r.kind == "arrow" else r for r in rows]
        body.append(rows)
    # Await points where control changed hands: the one that ran is now suspended.
    for i, rows in enumerate(body):
        who = ran[i]
        nxt = ran[i + 1] if i + 1 < len(ran) else None
        if who is not None and i + 1 < len(steps) and (nxt is None or nxt[0] != who[0]):
            where = _pos(states[i + 1], who[1])
            if where is not None:
                hung = " (hung)" if _hung(states[i + 1], who[1]) else ""
                rows.append(Row("note", who[0], who[0], "‖ " + AWAITS.get(where, where) + hung, i, "await"))
        if i == ex.violating:
            rows.append(Row("note", "", "", violation_text(ex), i, "violation"))
        d.rows.extend(rows)
    if RUNNER_P in {p.id for p in d.participants}:  # the runner goes last
        d.participants = [p for p in d.participants if p.id != RUNNER_P] + [Participant(RUNNER_P, "runner")]
    return d


def _records_changed(before: State, after: State) -> bool:
    return any(session_view(before, k) != session_view(after, k) for k in range(len(after.sessions)))


def violation_text(ex: Explained) -> str:
    p = ex.prop
    if ex.liveness and ex.violating < len(ex.trace.steps) - 1:
        head = f"✗ {p.number}. {p.title} ({p.name}): from here nothing settles"
    else:
        head = f"✗ {p.number}. {p.title} ({p.name}) fails"
    return f"{head}: {ex.condition}"


def wrap(text: str, width: int) -> list[str]:
    out: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        out.append(line)
    return out or [""]


# --- Mermaid -----------------------------------------------------------------------------


def _mm(text: str) -> str:
    """Text safe inside a Mermaid message or note."""
    return text.replace(";", ",").replace("#", "no. ").replace("->", "→")


def mermaid(ex: Explained) -> str:
    d = diagram(ex)
    lines = ["sequenceDiagram"]
    for p in d.participants:
        lines.append(f"    participant {p.id} as {_mm(p.label)}")
    first, last = d.participants[0].id, d.participants[-1].id
    in_rect = False
    for r in d.rows:
        if r.step == ex.violating and not in_rect:
            lines.append("    rect rgba(255, 80, 80, 0.15)")
            in_rect = True
        pad = "        " if in_rect else "    "
        if r.kind == "note" and r.style == "violation":
            lines.append(f"{pad}Note over {first},{last}: {'<br/>'.join(_mm(x) for x in wrap(r.label, 70))}")
        elif r.kind == "note":
            lines.append(f"{pad}Note over {r.src}: {_mm(r.label)}")
        else:
            arrow = {"call": "->>", "return": "->>", "fault": "-x"}[r.style]
            if r.style == "fault" and r.src not in (ENV,):
                arrow = "--x"
            label = f"{r.step + 1}. {_mm(r.label)}"
            if r.step == ex.violating:
                label = "⚠ " + label
            lines.append(f"{pad}{r.src}{arrow}{r.dst}: {label}")
    if in_rect:
        lines.append("    end")
    return "\n".join(lines)


# --- narrative and table ---------------------------------------------------------------------

#: Each rule of the designs, in plain words (a step's rule may chain several).
GLOSS = {
    "H:start": "the session is idle: a guard is installed and a task started",
    "H:busy-interrupt": 'busy: merged into P[k], the guard is set ("Interrupting current task...")',
    "H:busy-photo-queued": "busy: the photo is merged into P[k], no interrupt",
    "H:bypass": "a command goes straight to the runner",
    "H:C1-handoff": "a command while busy: a command guard replaces G[k], the runner is asked",
    "H:heal": "the recorded owner has finished: the stale guard is removed",
    "start": "the message is started as if the session were idle",
    "P1:call-runner": "the task takes the guard in G[k] as its own and calls the runner",
    "P1:runner-raised": "the runner raised",
    "P2:send-reply": "the runner answered; the reply is being sent",
    "P2:stale-reply-dropped": "the runner answered, but a follow-up interrupted: the reply is dropped as stale",
    "P2:send-raised": "sending the reply raised",
    "P3:pop-pending": "a follow-up is pending: it is popped and the guard cleared",
    "P3:inline-process": "the follow-up runs inside this same task (a nested process())",
    "P3:to-finally": "nothing pending: on to the finally",
    "E1:error-sent": "the error notice is sent",
    "E1:send-raised": "sending the error notice raised",
    "F1:typing-done": "the first cleanup await is done",
    "F1:cleanup-raised": "a cleanup await raised: the finally ends early, before F2",
    "F1:cleanup-cancelled": "a cleanup await was cancelled: the finally ends early, before F2",
    "F2:drain": "the finally finds a follow-up: a new task is started for it and recorded as owner",
    "F2:delete-guard": "the finally deletes whatever guard G[k] holds",
    "F2:release-own-guard": "the finally releases G[k] only if it is the task's own guard",
    "B1:runner-replied": "the runner answered the command",
    "B2:reply-sent": "the command's reply is sent",
    "C1:runner-replied": "the runner answered the command",
    "C1:runner-raised": "the runner raised on the command",
    "C2:cancel-owner": "O[k] is popped and the old task cancelled; the command waits for its end",
    "C2:no-running-owner": "no running owner to cancel",
    "C2:owner-ended": "the old task has ended",
    "C3:send-raised": "sending the command's reply raised",
    "C4:release": "P[k] is popped and the command guard released (by identity)",
    "C4:release-and-start-pending": "the command guard is released and the follow-ups started",
    "C-error:release": "the error path releases the command guard",
    "C-error:restore-old-guard": "the error path puts the old guard back",
    "C-error:guard-not-ours": "the error path leaves G[k]: it is no longer the command's guard",
    "cancel-task": "a task is cancelled from outside",
    "shutdown": "the gateway shuts down: every task cancelled, G, O and P cleared",
    "cancelled-before-start": "cancelled before its first step: its body and its finally never run",
    "cancel-swallowed": "the cancellation is swallowed by the cleanup's except clause",
    "cancelled": "the cancellation arrives at this await",
    "raised": "it raised",
    "hangs": "it never returns",
}


def gloss(rule: str) -> str:
    """A rule (or chain of rules) in plain words; empty if unknown."""
    out = []
    for part in rule.replace("timed out: ", "").replace(", then ", ", ").split(", "):
        key = part.split(" (")[0].split(" T")[0].strip()
        text = GLOSS.get(key) or GLOSS.get(key.replace(":runner:", ":runner-").replace(":send:", ":send-"))
        if text is None and ":" in key:
            text = GLOSS.get(key.rsplit(":", 1)[1])
        if text:
            out.append(text)
    return "; ".join(out)



def narrative(ex: Explained) -> list[str]:
    """The model's numbered narrative, with the violating step marked."""
    out: list[str] = []
    mark = ["       ⚠ " + text if n == 0 else "         " + text for n, text in enumerate(wrap(violation_text(ex), 80))]
    step = -1
    for line in narrate(ex.trace):
        if line[:3].strip().isdigit() and line[3:4] == ".":
            if step == ex.violating:
                out.extend(mark)
            step += 1
            words = gloss(ex.trace.steps[step].rule)
            if words:
                line += f"  ({words})"
            where = run_note(ex, step)
            if where:
                line += f"  [{where}]"
        out.append(line)
    if step == ex.violating:
        out.extend(mark)
    return out


def run_note(ex: Explained, i: int) -> str:
    """Where step `i` of a run happened: its loop step, the lane, and a deviation from FIFO."""
    note = ex.note(i)
    if note is None:
        return ""
    span = f"loop steps {note.loop_step} to {note.last}" if note.last is not None else f"loop step {note.loop_step}"
    text = f"{span}: {note.label}"
    if note.unseen:
        text += f", after {note.unseen} unseen"
        if note.unseen_deviated:
            text += f" ({note.unseen_deviated} of them not FIFO)"
    if note.deviated:
        text += f"; {NOT_FIFO} (choice {note.choice})"
    return text


def table(ex: Explained) -> tuple[list[str], list[list[str]]]:
    """Columns and rows: per step, the session records that changed (blank: unchanged)."""
    states = ex.trace.states
    keys = list(session_view(states[0], 0)) if len(states[0].sessions) == 1 else [
        key for k in range(len(states[0].sessions)) for key in session_view(states[0], k)
    ]
    loop = ex.notes is not None
    cols = ["step", *(["loop"] if loop else []), "who", *keys]
    first = {}
    for k in range(len(states[0].sessions)):
        first.update(session_view(states[0], k))
    rows = [["0", *([""] if loop else []), "(start)", *[first[key] for key in keys]]]
    for i, step in enumerate(ex.trace.steps):
        before, after = states[i], states[i + 1]
        b: dict[str, str] = {}
        a: dict[str, str] = {}
        for k in range(len(after.sessions)):
            b.update(session_view(before, k))
            a.update(session_view(after, k))
        who = actor_name(before, step.actor)
        if step.actor == "platform" and step.message is not None:
            who = f"platform: m{step.message} {after.messages[step.message].kind}"
        if step.fault:
            who += f" [{step.fault}]"
        mark = "⚠ " if i == ex.violating else ""
        note = ex.note(i)
        at = [] if not loop else [""] if note is None else [f"{note.loop_step}" + (" ⤳" if note.deviated else "")]
        rows.append([f"{mark}{i + 1}", *at, who, *[a[key] if a[key] != b[key] else "" for key in keys]])
    return cols, rows


def state_snapshot(state: State) -> dict[str, str]:
    """Every record of every session, plus the live tasks and handlers, in words."""
    out: dict[str, str] = {}
    for k in range(len(state.sessions)):
        out.update(session_view(state, k))
    tasks = [f"{task_name(state, t.tid)} {AWAITS.get(t.pc, t.pc)}" + (" (hung)" if t.hung else "") for t in state.tasks]
    out["tasks"] = "; ".join(tasks) or "none"
    hs = [f"{state.messages[h.mid].kind} m{h.mid} {AWAITS.get(h.pc, h.pc)}" + (" (hung)" if h.hung else "") for h in state.handlers]
    out["handlers"] = "; ".join(hs) or "none"
    return out


# --- the three text renderings ---------------------------------------------------------------


def header(ex: Explained) -> list[str]:
    p = ex.prop
    lines = [
        f"{ex.design}: property {p.number}, {p.title} ({p.name}), fails in {len(ex.trace)} steps",
        f"found {ex.origin}" if ex.origin else f"bound: {bounds_args(ex.bounds)}",
        f"condition that failed: {ex.condition}",
    ]
    return lines + run_summary(ex)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def run_summary(ex: Explained) -> list[str]:
    """For a run: what was left out, what the marks mean, what else the run broke."""
    if ex.notes is None:
        return []
    unseen = sum(n.unseen for n in ex.notes)
    deviated = sum(n.deviated for n in ex.notes)
    first, last = ex.notes[0], ex.notes[-1]
    text = f"run: {_count(len(ex.notes), 'model step')} in loop steps {first.loop_step - first.unseen} to {last.last or last.loop_step}"
    hidden = sum(n.unseen_deviated for n in ex.notes)
    text += f" ({_count(unseen, 'loop step')} the model does not see, left out"
    text += f", {hidden} of them out of FIFO order); " if hidden else "); "
    if deviated:
        text += f"{_count(deviated, 'step')} marked {NOT_FIFO}, where the schedule picked another ready lane than asyncio would"
    else:
        text += "no step shown deviates from asyncio's own FIFO order"
    lines = [text]
    if ex.left_out:
        lines.append(f"left out: {ex.left_out}")
    if ex.also:
        lines.append("the run also violates: " + "; ".join(ex.also))
    return lines


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(ex: Explained, *, level: int = 2, title: str | None = None, story: str = "") -> str:
    p = ex.prop
    h = "#" * level
    lines = [f"{h} {title or f'{ex.design}: {p.number}. {p.title} (`{p.name}`)'}", ""]
    if story:
        lines += [story.strip(), ""]
    scope = ex.scope if ex.origin else f" at `{bounds_args(ex.bounds)}`"
    lines.append(f"Property {p.number}, `{p.name}`, fails in {len(ex.trace)} steps{scope}; "
                 f"the highlighted step is {ex.violating + 1}.  Reproduce: `{ex.source}`")
    lines += [f"\n{x}" for x in run_summary(ex)]
    lines += ["", f"**Condition that failed:** {ex.condition}", "", "```mermaid", mermaid(ex), "```", ""]
    lines += ["```", *narrative(ex), "```", ""]
    cols, rows = table(ex)
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for r in rows:
        lines.append("| " + " | ".join(_md_cell(c) for c in r) + " |")
    return "\n".join(lines) + "\n"


def lanes(ex: Explained, *, col: int = 12) -> list[str]:
    """The diagram as a terminal lane chart: one column per participant."""
    d = diagram(ex)
    x = {p.id: i * col + col // 2 for i, p in enumerate(d.participants)}
    width = col * len(d.participants)
    out = ["".join(("adapter" if p.id == ADAPTER else p.label)[: col - 1].center(col) for p in d.participants)]
    for r in d.rows:
        line = [" "] * width
        for c in x.values():
            line[c] = "│"
        if r.kind == "note" and r.style == "violation":
            for text in wrap(r.label, 72):
                out.append("".join(line) + "  " + text)
            continue
        if r.kind == "note":
            line[x[r.src]] = "‖"
            out.append("".join(line).rstrip() + "    " + r.label[2:])
            continue
        a, b = x[r.src], x[r.dst]
        if a == b:
            line[a] = "↺"
        else:
            lo, hi = min(a, b), max(a, b)
            for c in range(lo + 1, hi):
                line[c] = "─"
            line[a] = "●"
            line[b] = ("▶" if b > a else "◀") if r.style != "fault" else "✕"
        mark = "⚠" if r.step == ex.violating else " "
        out.append("".join(line) + f" {mark}{r.step + 1:>2}. {r.label}")
    return out


def render_text(ex: Explained) -> str:
    lines = [*header(ex), f"reproduce: {ex.source}", "", *lanes(ex), "", *narrative(ex), ""]
    cols, rows = table(ex)
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    widths = [min(w, 34) for w in widths]

    def fmt(cells: list[str]) -> str:
        return "  ".join((c if len(c) <= w else c[: w - 1] + "…").ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    lines.append(fmt(cols))
    lines.extend(fmt(r) for r in rows)
    return "\n".join(lines) + "\n"


def render(ex: Explained, fmt: str) -> str:
    if fmt == "markdown":
        return render_markdown(ex)
    if fmt == "text":
        return render_text(ex)
    if fmt == "html":
        from sessionguard.explain_html import render_html

        return render_html(ex)
    raise ExplainError(f"unknown format {fmt!r}: use markdown, text or html")


def write_atomic(path: str, text: str) -> None:
    """Write `text` to `path` so that a reader never sees half of it."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise ExplainError(f"{path}: the folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
