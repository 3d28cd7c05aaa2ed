"""Helpers for driving the model step by step in tests."""

from __future__ import annotations

from sessionguard.model import Bounds, Design, State, Step
from sessionguard.model.vocabulary import FAULTS, KINDS

ALL = Bounds(messages=6, faults=3, sessions=2, kinds=KINDS, fault_kinds=FAULTS)


def pick(design: Design, state: State, actor: str, rule: str, *, fault: str | None = None,
         bounds: Bounds = ALL) -> tuple[Step, State]:
    """The enabled step whose actor is `actor` and whose rule starts with `rule`.

    For the platform, `actor` is "platform:KIND:k" (a message of KIND for session k).
    """
    options = design.successors(state, bounds)
    for step, nxt in options:
        if step.fault != fault:
            continue
        if actor.startswith("platform:"):
            _, kind, k = actor.split(":")
            if step.actor == "platform" and step.detail.endswith(f"{kind} for k{k}") and step.rule.startswith(rule):
                return step, nxt
        elif step.actor == actor and step.rule.startswith(rule):
            return step, nxt
    enabled = "; ".join(f"{s.actor} {s.rule} {s.fault or ''}" for s, _ in options)
    raise AssertionError(f"no step {actor} {rule} (fault {fault}); enabled: {enabled}")


def drive(design: Design, script: list[tuple[str, str] | tuple[str, str, str]],
          bounds: Bounds = ALL) -> list[State]:
    """Follow a script of (actor, rule[, fault]) from the initial state."""
    state = design.initial(bounds)
    states = [state]
    for entry in script:
        fault = entry[2] if len(entry) == 3 else None
        _, state = pick(design, state, entry[0], entry[1], fault=fault, bounds=bounds)
        states.append(state)
    return states
