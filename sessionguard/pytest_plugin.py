"""The pytest plugin: a gateway's own test suite runs the conformance check.

Installed with sessionguard (entry point ``pytest11``), nothing to configure::

    import pytest

    @pytest.mark.sessionguard("mygateway.platforms.telegram:TelegramAdapter", budget_seconds=5)
    def test_session_guard(sessionguard_conform):
        sessionguard_conform()

The marker's arguments are those of ``sessionguard conform``: the target,
and keyword-only ``binding`` ("hermes" or module:obj), ``scenarios`` (names;
default all), ``strategy``, ``budget_seconds``, ``schedules``, ``seed``.  The
test is parametrized with one case per scenario (its id is the scenario's
name), and ``sessionguard_conform()`` fails it with the violated property,
the narrated schedule and the command that replays it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

MARKER = "sessionguard"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(target, *, binding='hermes', scenarios=None, strategy='random', budget_seconds=10, "
        "schedules=None, seed=0): run sessionguard's conformance scenarios against target, one test each",
    )


def _settings(marker: pytest.Mark) -> dict[str, Any]:
    if len(marker.args) != 1 or not isinstance(marker.args[0], str):
        raise pytest.UsageError(f"@pytest.mark.{MARKER} takes the target as its one argument: module:Class")
    known = {"binding", "scenarios", "strategy", "budget_seconds", "schedules", "seed"}
    unknown = set(marker.kwargs) - known
    if unknown:
        raise pytest.UsageError(f"@pytest.mark.{MARKER}: unknown option(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    return {"target": marker.args[0], **marker.kwargs}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sessionguard_conform" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is None:
        raise pytest.UsageError(f"{metafunc.function.__name__} uses sessionguard_conform: mark it with @pytest.mark.{MARKER}(target)")
    from sessionguard.reference.scenarios import SCENARIOS

    names = _settings(marker).get("scenarios") or list(SCENARIOS)
    for name in names:
        if name not in SCENARIOS:
            raise pytest.UsageError(f"@pytest.mark.{MARKER}: unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    metafunc.parametrize("sessionguard_scenario", names, ids=names)


@pytest.fixture
def sessionguard_conform(request: pytest.FixtureRequest, sessionguard_scenario: str) -> Callable[[], Any]:
    """Call it to run this test's scenario against the marked target; fails on a violation."""
    from sessionguard.commands.conform import _text
    from sessionguard.conform.conformance import Options, check
    from sessionguard.reference.scenarios import SCENARIOS

    marker = request.node.get_closest_marker(MARKER)
    assert marker is not None
    settings = _settings(marker)

    def conform() -> Any:
        options = Options(
            strategy=settings.get("strategy", "random"),
            budget_seconds=float(settings.get("budget_seconds", 10.0)),
            schedules=settings.get("schedules"),
            seed=int(settings.get("seed", 0)),
        )
        report = check(settings["target"], settings.get("binding", "hermes"), SCENARIOS[sessionguard_scenario], options)
        if report.verdict != "pass":
            pytest.fail(_text(report), pytrace=False)
        return report

    return conform
