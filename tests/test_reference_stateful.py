"""Hypothesis drives the asyncio adapter: messages, faults and the scheduler's choices.

The rules build a scenario and a schedule: `deliver` adds an inbound message,
`inject` a fault, `advance` the next choices of the controlled loop (each
taken modulo the lanes that are ready), `settle` lets everything run until the
loop is quiet before the next messages.  After every rule the whole run is
replayed from the start under the controlled loop, every step checked
against the model (refinement) and every property judged.  A failure shrinks
to a short scenario and schedule, and its note is the command that replays it.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from sessionguard.loop import RunResult, run
from sessionguard.model import DESIGNS
from sessionguard.model.vocabulary import FAULTS, KINDS
from sessionguard.reference.adapter import Activation, Job, ReferenceAdapter
from sessionguard.reference.harness import (
    AdapterFactory,
    choices_chooser,
    encode_token,
    findings_of,
    scenario_run,
)
from sessionguard.reference.scenarios import Action, Fault, Scenario, Send

FAULT_CHOICES = list(FAULTS)

FAST = settings(
    max_examples=50,
    stateful_step_count=8,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # no explain phase
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class AdapterMachine(RuleBasedStateMachine):
    """Rules over one design; `allowed` are the properties a run may violate."""

    design = "reference"
    adapter_factory: AdapterFactory | None = None

    def __init__(self) -> None:
        super().__init__()
        self.phases: list[list[Action]] = [[]]
        self.choices: list[int] = []
        self.sends = 0
        self.faults = 0

    @property
    def allowed(self) -> set[str]:
        return set(DESIGNS[self.design].known)

    @precondition(lambda self: self.sends < 4)
    @rule(kind=st.sampled_from(KINDS), key=st.integers(0, 1))
    def deliver(self, kind: str, key: int) -> None:
        self.phases[-1].append(Send(kind, key))
        self.sends += 1

    @precondition(lambda self: self.faults < 2)
    @rule(fault=st.sampled_from(FAULT_CHOICES))
    def inject(self, fault: str) -> None:
        self.phases[-1].append(Fault(fault))
        self.faults += 1

    @rule(choices=st.lists(st.integers(0, 7), min_size=1, max_size=12))
    def advance(self, choices: list[int]) -> None:
        self.choices.extend(choices)

    @precondition(lambda self: bool(self.phases[-1]) and len(self.phases) < 3)
    @rule()
    def settle(self) -> None:
        self.phases.append([])

    def scenario(self) -> Scenario:
        phases = tuple(tuple(p) for p in self.phases if p)
        return Scenario("hypothesis", "built by the stateful test", phases or ((Send("text"),),))

    def run(self) -> RunResult:
        sc = self.scenario()
        return run(scenario_run(self.design, sc, adapter_factory=self.adapter_factory), choices_chooser(self.choices))

    @invariant()
    def refines_the_model_and_keeps_every_property(self) -> None:
        result = self.run()
        sc = self.scenario()
        note(f"replay: sessionguard replay --token {encode_token(self.design, sc, result.schedule)}")
        assert result.verdict == "ok", f"{result.describe()}\n{result.violation or ''}"
        bad = {p: f for p, f in findings_of(result).items() if p not in self.allowed}
        assert not bad, "\n".join(str(f) for f in bad.values())


class ReferenceMachine(AdapterMachine):
    design = "reference"


class SeedMachine(AdapterMachine):
    """seed may violate what it declares, but every step must still be a model step."""

    design = "seed"


TestReference = ReferenceMachine.TestCase
TestReference.settings = FAST
TestSeed = SeedMachine.TestCase
TestSeed.settings = FAST


class BrokenRelease(ReferenceAdapter):
    """Deliberately wrong: F2 deletes G[k] whoever holds it."""

    def _finish(self, job: Job, level: Activation) -> None:
        job.finished = True
        if self.owners.get(job.key) is job.task:
            del self.owners[job.key]
        self.guards.pop(job.key, None)


class BrokenMachine(AdapterMachine):
    design = "reference"
    adapter_factory = BrokenRelease


class PrefixTrapMachine(AdapterMachine):
    """prefix must keep no-orphan-guard: Hypothesis finds the #11016 trap instead."""

    design = "prefix"

    @property
    def allowed(self) -> set[str]:
        return set(DESIGNS["prefix"].known) - {"no-orphan-guard"}


@pytest.mark.parametrize("machine", [BrokenMachine, PrefixTrapMachine])
def test_hypothesis_finds_and_shrinks(machine: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(AssertionError) as info:
        run_state_machine_as_test(
            machine,
            settings=settings(FAST, max_examples=200, database=None, print_blob=False),
        )
    text = "\n".join([str(info.value), *getattr(info.value, "__notes__", []), capsys.readouterr().out])
    assert "refinement mismatch" in text or "no-orphan-guard" in text
    assert "replay: sessionguard replay --token" in text
