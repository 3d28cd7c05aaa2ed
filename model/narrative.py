"""Counterexamples told in words: who moved, at which await, and what changed.

Guard tokens and task ids are renamed in every state (see `world.py`), so a
narrative never shows raw tokens.  It names things by what they are for: a
task by the messages it was created for, `T(m0)`; a guard by who holds it,
"T(m0)'s guard" or "/stop m1's guard", or "a guard nobody holds".
"""

from __future__ import annotations

from .vocabulary import DEAD, State, Step, Trace


def task_name(state: State, tid: int | None) -> str:
    if tid is None:
        return "none"
    if tid == DEAD:
        return "a finished task"
    for t in state.tasks:
        if t.tid == tid:
            return "T(" + "+".join(f"m{m}" for m in t.levels[0].event) + ")"
    return "a finished task"


def guard_name(state: State, guard: int | None) -> str:
    """A guard named by who holds it: the command that installed it, the tasks
    that took it, or the task it was made for and that has not started yet."""
    if guard is None:
        return "none"
    commands = [f"{state.messages[h.mid].kind} m{h.mid}" for h in state.handlers if h.cg == guard]
    tasks = [task_name(state, t.tid) for t in state.tasks if any(lv.guard == guard for lv in t.levels)]
    if commands:
        name = f"{commands[0]}'s guard" + (f", held by {', '.join(tasks)}" if tasks else "")
    elif tasks:
        name = f"{tasks[0]}'s guard" + (f", also held by {', '.join(tasks[1:])}" if tasks[1:] else "")
    else:
        waiting = [
            task_name(state, t.tid)
            for t in state.tasks
            if t.pc == "start" and t.levels[0].guard is None and state.sessions[t.session].guard == guard
        ]
        name = f"the guard made for {waiting[-1]}" if waiting else "a guard nobody holds"
    if guard in state.set_guards:
        name += " (interrupt set)"
    return name


def actor_name(state: State, actor: str) -> str:
    if actor.startswith("T"):
        return task_name(state, int(actor[1:]))
    if actor.startswith("H"):
        m = int(actor[1:])
        return f"handle_message({state.messages[m].kind} m{m})"
    return actor


def session_view(state: State, k: int) -> dict[str, str]:
    """The four records of one session, as words."""
    s = state.sessions[k]
    pending = "none" if s.pending is None else "[" + ", ".join(f"m{m}" for m in s.pending) + "]"
    return {
        f"G[k{k}]": guard_name(state, s.guard),
        f"O[k{k}]": task_name(state, s.owner),
        f"P[k{k}]": pending,
        f"R[k{k}]": task_name(state, s.runner),
    }


def changes(before: State, after: State) -> list[str]:
    """What a step changed: session records, tasks started or ended, fates."""
    out = []
    for k in range(len(after.sessions)):
        b, a = session_view(before, k), session_view(after, k)
        for key in a:
            if a[key] != b[key]:
                out.append(f"{key}: {b[key]} -> {a[key]}")
    names_before = {task_name(before, t.tid) for t in before.tasks}
    names_after = {task_name(after, t.tid) for t in after.tasks}
    for name in sorted(names_after - names_before):
        out.append(f"{name} created")
    for name in sorted(names_before - names_after):
        out.append(f"{name} ended")
    for m, msg in enumerate(after.messages):
        old = before.messages[m] if m < len(before.messages) else None
        if old is None:
            continue
        if msg.fate != old.fate:
            out.append(f"m{m}: {msg.fate}")
        if msg.reply != old.reply and msg.reply not in (None, "owed"):
            out.append(f"m{m}'s reply: {msg.reply}")
    return out


def describe_step(before: State, step: Step) -> str:
    who = actor_name(before, step.actor)
    if step.actor == "platform" and step.message is not None:
        return f"platform delivers {step.detail}; adapter {step.rule}"
    text = f"{who} {step.rule}"
    where = step.detail.split(",")[0] if step.detail.startswith("at ") else ""
    if where:
        text = f"{who} resumes {where}: {step.rule}"
    if step.fault:
        text += f"  [fault: {step.fault}]"
    return text


def narrate(trace: Trace) -> list[str]:
    """Numbered steps, each with what it changed."""
    lines = []
    for i, step in enumerate(trace.steps):
        before, after = trace.states[i], trace.states[i + 1]
        lines.append(f"{i + 1:>3}. {describe_step(before, step)}")
        for change in changes(before, after):
            lines.append(f"       {change}")
    return lines


def trace_to_json(trace: Trace) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i, step in enumerate(trace.steps):
        before, after = trace.states[i], trace.states[i + 1]
        out.append(
            {
                "step": i + 1,
                "actor": actor_name(before, step.actor),
                "rule": step.rule,
                "detail": step.detail,
                "fault": step.fault,
                "text": describe_step(before, step),
                "changes": changes(before, after),
            }
        )
    return out
