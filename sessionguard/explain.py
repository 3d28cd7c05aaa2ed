"""Explain a counterexample: a sequence diagram, a narrative and a table of state.

A counterexample comes either from the checker (a design, a property and a
bound) or from a saved report (`sessionguard check --format json`).  A saved
trace is never trusted: it is replayed, step by step, through the current
rules of the model, and the property is judged again at its end, so every
picture this module draws is of a real path through the model.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


class ExplainError(Exception):
    """The counterexample cannot be explained: bad input, told in one line."""


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

    @property
    def liveness(self) -> bool:
        return isinstance(self.prop, Liveness)


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


def load_report(path: str) -> dict[str, Any]:
    """A saved `sessionguard check --format json` report."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExplainError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExplainError(f"{path}: cannot read it ({exc.__class__.__name__})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExplainError(f"{path}: not JSON (line {exc.lineno}: {exc.msg}); give the output of 'sessionguard check --format json'") from None
    if not isinstance(data, dict) or not isinstance(data.get("reports"), list):
        raise ExplainError(f"{path}: no 'reports' list; give the output of 'sessionguard check --format json'")
    return data


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


def from_file(path: str, *, design: str | None = None, prop: str | None = None) -> Explained:
    """Explain a counterexample of a saved report, replayed through the current model."""
    return from_data(load_report(path), path, design=design, prop=prop)


def from_data(data: dict[str, Any], path: str, *, design: str | None = None, prop: str | None = None) -> Explained:
    """Like `from_file`, for a report already loaded (`path` only names it in errors)."""
    if prop is not None and prop not in BY_NAME:
        raise ExplainError(f"unknown property {prop!r}: use one of {', '.join(BY_NAME)}")
    found: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for r in data["reports"]:
        if not isinstance(r, dict) or not isinstance(r.get("verdicts"), list):
            raise ExplainError(f"{path}: a report without a 'verdicts' list")
        name = r.get("design")
        if name not in DESIGNS:
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
    if pname not in BY_NAME:
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


# --- the diagram model ---------------------------------------------------------------------

PLATFORM, ENV, ADAPTER, RUNNER_P = "platform", "environment", "adapter", "runner"

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
        out.append(line)
    if step == ex.violating:
        out.extend(mark)
    return out


def table(ex: Explained) -> tuple[list[str], list[list[str]]]:
    """Columns and rows: per step, the session records that changed (blank: unchanged)."""
    states = ex.trace.states
    keys = list(session_view(states[0], 0)) if len(states[0].sessions) == 1 else [
        key for k in range(len(states[0].sessions)) for key in session_view(states[0], k)
    ]
    cols = ["step", "who", *keys]
    first = {}
    for k in range(len(states[0].sessions)):
        first.update(session_view(states[0], k))
    rows = [["0", "(start)", *[first[key] for key in keys]]]
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
        rows.append([f"{mark}{i + 1}", who, *[a[key] if a[key] != b[key] else "" for key in keys]])
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
    return [
        f"{ex.design}: property {p.number}, {p.title} ({p.name}), fails in {len(ex.trace)} steps",
        f"bound: {bounds_args(ex.bounds)}",
        f"condition that failed: {ex.condition}",
    ]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(ex: Explained, *, level: int = 2, title: str | None = None, story: str = "") -> str:
    p = ex.prop
    h = "#" * level
    lines = [f"{h} {title or f'{ex.design}: {p.number}. {p.title} (`{p.name}`)'}", ""]
    if story:
        lines += [story.strip(), ""]
    lines.append(f"Property {p.number}, `{p.name}`, fails in {len(ex.trace)} steps at `{bounds_args(ex.bounds)}`; "
                 f"the highlighted step is {ex.violating + 1}.  Reproduce: `{ex.source}`")
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
