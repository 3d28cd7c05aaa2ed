"""Rendering of checker reports: a table of design x property, then each counterexample."""

from __future__ import annotations

from sessionguard.model import PROPERTIES, Report
from sessionguard.model.checker import HOLDS, INCOMPLETE, VIOLATED, Verdict
from sessionguard.model.narrative import narrate, trace_to_json


def _cell(v: Verdict) -> str:
    if v.status == HOLDS:
        return "holds"
    if v.status == INCOMPLETE:
        return "incomplete"
    assert v.trace is not None
    text = f"VIOLATED ({len(v.trace)} steps)"
    return text + (" known" if v.known else "")


def render_text(reports: list[Report], *, argv_hint: str = "sessionguard check") -> str:
    lines: list[str] = []
    b = reports[0].bounds
    lines.append(
        f"bounds: {b.messages} messages ({', '.join(b.kinds)}), {b.faults} fault(s), "
        f"{b.sessions} session(s)"
    )
    width = max(len(p.name) for p in PROPERTIES) + 6
    cols = [r.design for r in reports]
    colw = max(28, *(len(c) + 2 for c in cols))
    lines.append("")
    lines.append("property".ljust(width) + "".join(c.ljust(colw) for c in cols))
    by_design = [{v.prop.name: v for v in r.verdicts} for r in reports]
    for p in PROPERTIES:
        if p.name not in by_design[0]:
            continue
        row = f"{p.number:>2} {p.name}".ljust(width)
        row += "".join(_cell(d[p.name]).ljust(colw) for d in by_design)
        lines.append(row)
    lines.append("")
    for r in reports:
        s = r.stats
        state = "complete" if r.complete else f"INCOMPLETE (stopped by the {r.stopped_by} budget)"
        lines.append(
            f"{r.design}: {s.states:,} states, {s.transitions:,} transitions, depth {s.depth}, "
            f"{s.seconds:.2f} s, {s.states_per_second:,.0f} states/s, {state}"
        )
    for r in reports:
        for v in r.verdicts:
            if v.status != VIOLATED or v.trace is None:
                continue
            lines.append("")
            title = f"== {r.design}: {v.prop.number}. {v.prop.title} ({v.prop.name}) fails in {len(v.trace)} steps"
            lines.append(title)
            if v.known:
                lines.append(f"   known for {r.design}: {v.known}")
            lines.append(f"   condition: {v.condition}")
            lines.extend(narrate(v.trace))
            for rule, trace in v.by_rule.items():
                if trace.steps == v.trace.steps:
                    continue
                lines.append(f"   -- another way, broken by the rule {rule} ({len(trace)} steps):")
                lines.extend(narrate(trace))
    undeclared = [(r.design, v.prop.name) for r in reports for v in r.undeclared]
    lines.append("")
    if undeclared:
        lines.append(
            "undeclared violations: " + ", ".join(f"{d}/{p}" for d, p in undeclared)
        )
        lines.append(f"reproduce: {argv_hint} --design {undeclared[0][0]} --property {undeclared[0][1]}")
    else:
        lines.append("no undeclared violation")
    return "\n".join(lines)


def render_json(reports: list[Report]) -> dict[str, object]:
    out = []
    for r in reports:
        b = r.bounds
        out.append(
            {
                "design": r.design,
                "bounds": {
                    "messages": b.messages,
                    "faults": b.faults,
                    "sessions": b.sessions,
                    "kinds": list(b.kinds),
                    "fault_kinds": list(b.fault_kinds),
                },
                "complete": r.complete,
                "stopped_by": r.stopped_by,
                "stats": {
                    "states": r.stats.states,
                    "transitions": r.stats.transitions,
                    "depth": r.stats.depth,
                    "seconds": round(r.stats.seconds, 3),
                    "states_per_second": round(r.stats.states_per_second, 1),
                },
                "verdicts": [
                    {
                        "property": v.prop.name,
                        "number": v.prop.number,
                        "kind": v.prop.kind,
                        "status": v.status,
                        "known": v.known,
                        "condition": v.condition,
                        "trace": trace_to_json(v.trace) if v.trace else None,
                        "by_rule": {rule: trace_to_json(t) for rule, t in v.by_rule.items()},
                    }
                    for v in r.verdicts
                ],
            }
        )
    return {"reports": out, "undeclared": [f"{r.design}/{v.prop.name}" for r in reports for v in r.undeclared]}
