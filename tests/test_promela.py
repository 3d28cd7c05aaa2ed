"""The Promela export: Spin finds exactly our states and our verdicts.

The comparison tests need `spin` and `gcc` (Debian/Ubuntu: apt-get install -y
spin gcc) and are skipped, saying so, without them; the others do not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sessionguard.model import DESIGNS, Bounds, CheckerConfig, check
from sessionguard.model.checker import VIOLATED
from sessionguard.model.promela import (
    SAFETY,
    PromelaError,
    SpinError,
    _parse,
    generate,
    run_spin,
    spin_available,
)
from sessionguard.model.vocabulary import APPROVE, KINDS, NEW, STOP, TEXT

needs_spin = pytest.mark.skipif(spin_available() is not None, reason=f"Spin comparison: {spin_available()}")

#: Small enough for a few seconds per design, large enough that each design
#: breaks what it is known to break (prefix and seed) or holds (reference).
SMALL = Bounds(messages=2, faults=1, kinds=(TEXT, STOP, APPROVE))


def ours(design: str, bounds: Bounds) -> tuple[int, set[str]]:
    report = check(DESIGNS[design], bounds, CheckerConfig(symmetry=False, merge_history=False))
    assert report.complete
    return report.stats.states, {
        v.prop.name for v in report.verdicts if v.status == VIOLATED and v.prop.name in SAFETY
    }


@needs_spin
@pytest.mark.parametrize("design", list(DESIGNS))
def test_spin_stores_exactly_our_states_and_breaks_the_same_properties(design: str) -> None:
    spin = run_spin(generate(design, SMALL), optimize=False)
    states, violated = ours(design, SMALL)
    assert spin.states == states
    assert spin.violated == violated
    if design != "reference":
        assert violated, "the bound is too small to tell the verdicts apart"


@needs_spin
def test_two_sessions_and_every_kind_agree_too() -> None:
    bounds = Bounds(messages=2, faults=1, sessions=2, kinds=(TEXT, STOP, NEW))
    for design in ("seed", "reference"):
        spin = run_spin(generate(design, bounds), optimize=False)
        assert (spin.states, spin.violated) == ours(design, bounds)
    every_kind = Bounds(messages=2, faults=1, kinds=KINDS)
    spin = run_spin(generate("seed", every_kind), optimize=False)
    assert (spin.states, spin.violated) == ours("seed", every_kind)


@needs_spin
def test_spin_with_its_own_reduction_gives_the_same_verdicts() -> None:
    spin = run_spin(generate("prefix", SMALL), reduce=True, optimize=False)
    assert spin.violated == ours("prefix", SMALL)[1]


def test_the_model_is_generated_from_the_bound() -> None:
    source = generate("seed", SMALL)
    assert "#define M 2" in source and "#define S 1" in source
    # Only the kinds of the bound arrive, and only the faults of the bound strike.
    assert "sc_akind = K_STOP" in source and "sc_akind = K_PHOTO" not in source
    no_hangs = Bounds(messages=2, faults=1, kinds=(TEXT,), fault_kinds=("runner-raises",))
    narrow = generate("seed", no_hangs)
    assert "sc_act = T_RUNNER_RAISES" in narrow and "sc_act = T_RUNNER_HANGS" not in narrow
    # The designs differ where their rules differ.
    assert "after_inband" in source and "after_inband" not in generate("reference", SMALL)
    assert "reap(" in generate("reference", SMALL) and "command_begin" not in generate("prefix", SMALL)
    assert generate("seed", SMALL) == source  # deterministic


def test_bad_design_or_bound_is_refused() -> None:
    with pytest.raises(PromelaError, match="unknown design 'bogus'"):
        generate("bogus", SMALL)
    with pytest.raises(PromelaError, match="use 1 to 8"):
        generate("seed", Bounds(messages=9))


def test_a_broken_capacity_assertion_is_never_taken_for_a_verdict() -> None:
    out = (
        "pan:1: assertion violated  !(bad_order) (at depth 3)\n"
        "pan:2: assertion violated  (sc_fresh<30) (at depth 9)\n"
        "  12 states, stored\n  20 transitions (= stored+matched)\n"
    )
    with pytest.raises(SpinError, match="its own assertion"):
        _parse(out, 0.0, 0.0, [])
    ok = _parse(out.replace("pan:2: assertion violated  (sc_fresh<30) (at depth 9)\n", ""), 0.0, 0.0, [])
    assert (ok.states, ok.violated) == (12, {"order"})
    with pytest.raises(SpinError, match="too small"):
        _parse("error: max search depth too small\n" + out, 0.0, 0.0, [])


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sessionguard", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_export_writes_the_file_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "seed.pml"
    r = run_cli("export", "--promela", "--design", "seed", "--messages", "2", "--kinds", "text,/stop",
                "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_text() == generate("seed", Bounds(messages=2, faults=1, kinds=(TEXT, STOP)))
    assert "wrote" in r.stderr and r.stdout == ""
    assert os.listdir(tmp_path) == ["seed.pml"]  # no temporary file left behind


@pytest.mark.parametrize(
    "args,needle",
    [
        (["export", "--design", "seed"], "add --promela"),
        (["export", "--promela", "--design", "all"], "invalid choice: 'all'"),
        (["export", "--promela", "--design", "seed", "--kinds", "text,/dance"], "unknown message kind '/dance'"),
        (["export", "--promela", "--design", "seed", "--fault-kinds", "meteor"], "unknown fault 'meteor'"),
        (["export", "--promela", "--design", "seed", "--messages", "9"], "out of range: use 1 to 8"),
        (["export", "--promela", "--design", "seed", "-o", "missing/dir/m.pml"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_file(tmp_path: Path, args: list[str], needle: str) -> None:
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert os.listdir(tmp_path) == []


@needs_spin
def test_a_rule_left_out_of_the_promela_shows_in_the_comparison() -> None:
    """The equality is not vacuous: drop seed's heal from the export and Spin disagrees."""
    source = generate("seed", SMALL)
    heal = "set_g(K, 0); sess[K].pending = 0; sess[K].owner = 0"
    assert heal in source
    spin = run_spin(source.replace(heal, "skip"), optimize=False)
    assert (spin.states, spin.violated) != ours("seed", SMALL)
