"""Checker figures: states, transitions, seconds, states per second, and what
the reductions buy, each measured side by side in one run.

    python benchmarks/checker_bench.py            # default bound and the large bounds
    python benchmarks/checker_bench.py --quick    # default bound only

The reduction ratio is "states with the reduction off / states with it on" at
the same bound, both runs in this process.  Symmetry over session keys needs
two or more sessions to do anything, so it is measured at a two-session bound.
"""

from __future__ import annotations

import argparse
import platform
import time

from sessionguard.commands.check import DEFAULT_KINDS, DEFAULTS
from sessionguard.model import DESIGNS, Bounds, CheckerConfig, check
from sessionguard.model.vocabulary import STOP, TEXT


def row(design: str, bounds: Bounds, config: CheckerConfig) -> tuple[int, int, float, str]:
    report = check(DESIGNS[design], bounds, config)
    s = report.stats
    verdict = "holds" if not any(v.status == "violated" for v in report.verdicts) else "violations"
    if not report.complete:
        verdict = "incomplete"
    return s.states, s.transitions, s.seconds, verdict


def table(title: str, bounds: Bounds, designs: list[str], *, ratio: str | None) -> None:
    print(f"\n{title}")
    print(f"  bound: {bounds.messages} messages ({','.join(bounds.kinds)}), {bounds.faults} fault(s), "
          f"{bounds.sessions} session(s)")
    print(f"  {'design':<10} {'states':>10} {'transitions':>12} {'seconds':>8} {'states/s':>9}  "
          f"{'verdict':<11} {ratio or ''}")
    for name in designs:
        on = row(name, bounds, CheckerConfig())
        states, transitions, seconds, verdict = on
        line = (f"  {name:<10} {states:>10,} {transitions:>12,} {seconds:>8.2f} {states / seconds:>9,.0f}  "
                f"{verdict:<11}")
        if ratio is None:
            print(line)
            continue
        if ratio == "symmetry off/on":
            off = row(name, bounds, CheckerConfig(symmetry=False))
        else:
            off = row(name, bounds, CheckerConfig(symmetry=False, merge_history=False))
        print(f"{line} {off[0] / states:.2f} ({off[0]:,} / {states:,}, {off[2]:.1f} s off)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the default bound only")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, {platform.platform()}")
    started = time.perf_counter()
    default = Bounds(messages=DEFAULTS["messages"], faults=DEFAULTS["faults"], sessions=DEFAULTS["sessions"],
                     kinds=DEFAULT_KINDS)
    table("default bound (sessionguard check)", default, list(DESIGNS), ratio="reductions off/on")
    if not args.quick:
        table("two sessions", Bounds(messages=2, faults=1, sessions=2, kinds=(TEXT, STOP)),
              list(DESIGNS), ratio="symmetry off/on")
        table("three messages", Bounds(messages=3, faults=1), list(DESIGNS), ratio="reductions off/on")
        table("four messages, commands included", Bounds(messages=4, faults=1, kinds=(TEXT, STOP)),
              list(DESIGNS), ratio="reductions off/on")
        table("four messages of four kinds (reductions on only: off takes many minutes)",
              Bounds(messages=4, faults=1), list(DESIGNS), ratio=None)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
