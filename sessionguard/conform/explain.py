"""A conformance run told by `sessionguard explain`: diagram, narrative, state table.

A run against a foreign adapter has no model design to replay it in, but the
monitor has already written every loop step as a model state and a model
step (`monitor.Monitor.trace`), so the explanation is built from those
directly: the steps that changed something the model sees, up to the one
that broke the property, each noted with its loop step and whether the
schedule left asyncio's FIFO order there.  The renderers are the ones every
other counterexample goes through (`sessionguard.explain`).
"""

from __future__ import annotations

from sessionguard.explain import Explained, ExplainError, RunNote
from sessionguard.loop import run
from sessionguard.model.properties import BY_NAME
from sessionguard.model.vocabulary import Trace
from sessionguard.reference.harness import choices_chooser

from .binding import BindingError, load_binding, load_object
from .conformance import decode, replay_command
from .run import Rig, conform_run, findings_of


def explained(target_spec: str, binding_spec: str, token: str, *, prop: str | None = None) -> Explained:
    """Replay a conform token against the target and explain its (first, or `prop`'s) violation."""
    try:
        scenario, choices = decode(token)
        target = load_object(target_spec, what="target")
        binding = load_binding(binding_spec)
    except (ValueError, BindingError) as exc:
        raise ExplainError(str(exc)) from None
    rigs: list[Rig] = []
    result = run(conform_run(target, binding, scenario, on_rig=rigs.append), choices_chooser(choices))
    found = findings_of(result)
    if not found or not rigs:
        raise ExplainError(f"the run violates no property against {target_spec} ({result.verdict}): nothing to explain")
    if prop is not None and prop not in found:
        raise ExplainError(f"the run does not violate {prop}; it violates {', '.join(sorted(found))}")
    finding = found[prop] if prop is not None else min(found.values(), key=lambda f: f.step)
    schedule = list(result.schedule.choices)
    trace = Trace()
    notes: list[RunNote] = []
    unseen = deviated = 0
    previous = None
    violating = 0
    for step, label, state, st in rigs[-1].monitor.trace:
        choice = schedule[step] if step < len(schedule) else 0
        if previous is None:
            trace.states.append(state)
        elif state != previous and st is not None and step <= finding.step:
            trace.steps.append(st)
            trace.states.append(state)
            notes.append(RunNote(step, label, choice, unseen, deviated))
            unseen = deviated = 0
        else:
            unseen += 1
            deviated += choice != 0
        if step <= finding.step and trace.steps:
            violating = len(trace.steps) - 1
        previous = state
    if not trace.steps:
        raise ExplainError("the run changed nothing the model sees before its violation")
    others = [f"{f.prop}: {f.why}" for f in found.values() if f is not finding]
    return Explained(
        design=target_spec,
        bounds=scenario.bounds(),
        prop=BY_NAME[finding.prop],
        condition=finding.why,
        trace=trace,
        violating=violating,
        source=replay_command(target_spec, binding_spec, token),
        origin=f"in a conform run of {target_spec} on scenario {scenario.name}",
        notes=notes,
        also=others,
    )
