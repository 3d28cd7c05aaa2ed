"""Our checker against Spin on the same Promela-exported bound, side by side.

    python benchmarks/spin_bench.py                 # three bounds, then the speed comparison
    python benchmarks/spin_bench.py --quick         # the smallest bound only
    python benchmarks/spin_bench.py --speed-only --rounds 3   # part 2 only, fastest of 3 runs of each

Part 1, the same state space: for each bound and design, Spin with its
partial-order reduction off (-DNOREDUCE) on `sessionguard export --promela`,
and our checker with its reductions off (--no-symmetry --no-merge-history).
Prints both state counts, whether they are equal, both verdicts for every
safety property (Spin's failed assertions, our violations), and the wall
times (Spin: spin -a and gcc, then pan).

Part 2, speed: at a larger bound (SPEED_BOUND), our checker as
`sessionguard check` runs it (symmetry and history merging on) against Spin
as it runs by default (partial-order reduction on), compile and search
included; the ratio is ours / Spin, from this one run.  With --rounds N each
checker runs N times per design, the two alternating, and the fastest run of
each counts: on a machine shared with other jobs that keeps a burst of load on
one side from deciding the ratio.  The ratio is of wall seconds; CPU seconds
(ours: this process; Spin: spin, gcc and pan, as child processes) are printed
beside it, since other jobs on the machine disturb them less.

Needs spin and gcc (Debian/Ubuntu: apt-get install -y spin gcc).  Liveness
(property 9) is not part of the Promela model, so it is left out of the
comparison.
"""

from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass

from sessionguard.model import DESIGNS, Bounds, CheckerConfig, check
from sessionguard.model.checker import VIOLATED
from sessionguard.model.promela import SAFETY, check_command, generate, run_spin, spin_available
from sessionguard.model.vocabulary import APPROVE, KINDS, NEW, PHOTO, STOP, TEXT

#: Part 1: three bounds, small to large (ours with its reductions off stays under a minute).
BOUNDS = [
    ("default bound of check", Bounds(messages=2, faults=1, kinds=KINDS)),
    ("2 messages, 2 sessions", Bounds(messages=2, faults=1, sessions=2, kinds=(TEXT, STOP, NEW))),
    ("3 messages of 4 kinds", Bounds(messages=3, faults=1, kinds=(TEXT, PHOTO, STOP, APPROVE))),
]
#: Part 2: the largest bound at which both checkers, each with its own reductions
#: on, check all three designs in about a minute on a 2-core machine.
SPEED_BOUND = ("4 messages (text, /stop)", Bounds(messages=4, faults=1, kinds=(TEXT, STOP)))


def export_command(design: str, b: Bounds) -> str:
    return (f"sessionguard export --promela --design {design} --messages {b.messages} --faults {b.faults} "
            f"--sessions {b.sessions} --kinds {','.join(b.kinds)} --fault-kinds {','.join(b.fault_kinds)}")


def ours(design: str, bounds: Bounds, *, reductions: bool) -> tuple[int, set[str], float]:
    config = CheckerConfig() if reductions else CheckerConfig(symmetry=False, merge_history=False)
    started = time.perf_counter()
    report = check(DESIGNS[design], bounds, config)
    seconds = time.perf_counter() - started
    if not report.complete:
        raise SystemExit(f"our check did not complete: {check_command(design, bounds)}")
    violated = {v.prop.name for v in report.verdicts if v.status == VIOLATED and v.prop.name in SAFETY}
    return report.stats.states, violated, seconds


@dataclass
class SameSpaceRow:
    """One (bound, design) of part 1: both state counts and both sets of violated properties."""

    bound: str
    design: str
    spin_states: int
    our_states: int
    spin_violated: set[str]
    our_violated: set[str]

    @property
    def equal(self) -> bool:
        return self.spin_states == self.our_states

    @property
    def same(self) -> bool:
        return self.spin_violated == self.our_violated


@dataclass
class SpeedTotals:
    """Part 2 summed over the designs: wall seconds of each checker (Spin: compile and search)."""

    bound: str
    ours_seconds: float
    spin_seconds: float
    spin_compile_seconds: float
    ours_cpu_seconds: float = 0.0
    spin_cpu_seconds: float = 0.0  # spin, gcc and pan

    @property
    def ratio(self) -> float:
        return self.ours_seconds / self.spin_seconds


def tool_versions() -> str:
    spin_version = subprocess.run(["spin", "-V"], capture_output=True, text=True).stdout.strip()
    gcc_version = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
    return f"{spin_version}, gcc {gcc_version}"


def verdicts(violated: set[str]) -> str:
    return "".join("x" if p in violated else "." for p in SAFETY)


def same_space(bounds: list[tuple[str, Bounds]]) -> list[SameSpaceRow]:
    print("\nPart 1: the same state space (Spin -DNOREDUCE; ours --no-symmetry --no-merge-history)")
    print("  verdicts: one character per safety property in SPEC order "
          f"({', '.join(SAFETY)}); x = violated, . = holds")
    print(f"  {'bound':<24} {'design':<10} {'Spin states':>12} {'our states':>11} {'equal':>6}  "
          f"{'Spin':<10} {'ours':<10} {'same':>5}  {'Spin s (cc+pan)':>16} {'ours s':>7}")
    rows: list[SameSpaceRow] = []
    for title, b in bounds:
        for design in DESIGNS:
            spin = run_spin(generate(design, b))
            states, violated, seconds = ours(design, b, reductions=False)
            rows.append(SameSpaceRow(title, design, spin.states, states, spin.violated, violated))
            equal, same = rows[-1].equal, rows[-1].same
            print(f"  {title:<24} {design:<10} {spin.states:>12,} {states:>11,} {'yes' if equal else 'NO':>6}  "
                  f"{verdicts(spin.violated):<10} {verdicts(violated):<10} {'yes' if same else 'NO':>5}  "
                  f"{spin.compile_seconds:>6.1f}+{spin.search_seconds:<8.2f} {seconds:>7.2f}", flush=True)
            if not (equal and same):
                print(f"    replay: {export_command(design, b)} -o m.pml && spin -a m.pml && "
                      f"gcc -O2 -DSAFETY -DNOREDUCE -o pan pan.c && ./pan -c0 -m1000000")
                print(f"    and:    {check_command(design, b)}")
    return rows


def _children_cpu_seconds() -> float:
    """CPU seconds used so far by finished child processes (Spin, gcc and pan)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def speed(title: str, b: Bounds, rounds: int = 1) -> SpeedTotals:
    print(f"\nPart 2: speed at the bound '{title}' (ours: reductions on, as `sessionguard check`; "
          "Spin: default partial-order reduction, compile and search)"
          + (f"; fastest of {rounds} alternating runs of each" if rounds > 1 else ""))
    print("  wall seconds decide the ratio; CPU seconds (ours: this process; Spin: spin, gcc and pan) are "
          "shown too, as a busy machine disturbs them less")
    print(f"  {'design':<10} {'our states':>11} {'ours s':>8} {'Spin states':>12} {'Spin s':>8} "
          f"{'(cc + pan)':>14} {'ours/Spin':>10}  {'ours cpu':>8} {'Spin cpu':>8} {'cpu ratio':>9}")
    total_ours = total_spin = total_compile = total_ours_cpu = total_spin_cpu = 0.0
    for design in DESIGNS:
        source = generate(design, b)
        our_runs, our_cpu, spin_runs, spin_cpu = [], [], [], []
        for _ in range(rounds):
            cpu = time.process_time()
            our_runs.append(ours(design, b, reductions=True))
            our_cpu.append(time.process_time() - cpu)
            cpu = _children_cpu_seconds()
            spin_runs.append(run_spin(source, reduce=True))
            spin_cpu.append(_children_cpu_seconds() - cpu)
        states, _, seconds = min(our_runs, key=lambda our: our[2])
        spin = min(spin_runs, key=lambda run: run.seconds)
        total_ours += seconds
        total_spin += spin.seconds
        total_compile += spin.compile_seconds
        total_ours_cpu += min(our_cpu)
        total_spin_cpu += min(spin_cpu)
        print(f"  {design:<10} {states:>11,} {seconds:>8.2f} {spin.states:>12,} {spin.seconds:>8.2f} "
              f"{spin.compile_seconds:>6.2f} + {spin.search_seconds:<5.2f} {seconds / spin.seconds:>10.2f}  "
              f"{min(our_cpu):>8.2f} {min(spin_cpu):>8.2f} {min(our_cpu) / min(spin_cpu):>9.2f}",
              flush=True)
    print(f"  {'total':<10} {'':>11} {total_ours:>8.2f} {'':>12} {total_spin:>8.2f} {'':>14} "
          f"{total_ours / total_spin:>10.2f}  {total_ours_cpu:>8.2f} {total_spin_cpu:>8.2f} "
          f"{total_ours_cpu / total_spin_cpu:>9.2f}")
    return SpeedTotals(title, total_ours, total_spin, total_compile, total_ours_cpu, total_spin_cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the smallest bound only, no speed comparison")
    parser.add_argument("--speed-only", action="store_true", help="the speed comparison (part 2) only")
    parser.add_argument("--rounds", type=int, default=1,
                        help="part 2: runs of each checker per design, the fastest counts (default 1)")
    args = parser.parse_args()
    if args.rounds < 1:
        print(f"error: --rounds must be 1 or more, got {args.rounds}", file=sys.stderr)
        return 2
    if args.quick and args.speed_only:
        print("error: --quick and --speed-only exclude each other (--quick skips the speed part)",
              file=sys.stderr)
        return 2
    missing = spin_available()
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, {tool_versions()}")
    started = time.perf_counter()
    bounds = [] if args.speed_only else BOUNDS[:1] if args.quick else BOUNDS
    ok = all(row.equal and row.same for row in same_space(bounds)) if bounds else True
    if not args.quick:
        speed(*SPEED_BOUND, rounds=args.rounds)
    if not bounds:
        verdict = "part 1 (counts and verdicts) skipped"
    else:
        verdict = "every count and verdict equal" if ok else "SOME COUNT OR VERDICT DIFFERS (see replay lines)"
    print(f"\ntotal {time.perf_counter() - started:.0f} s; {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
