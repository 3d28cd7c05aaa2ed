"""A long seeded fault campaign against the `reference` adapter.

Every named scenario, plus ad-hoc scenarios generated from the seed (several
sessions, messages of every kind, every fault of SPEC 4 armed in each), is run
under random and PCT schedules.  Every loop step is checked against the model
(refinement) and every property is judged, as in `sessionguard explore`; for
`reference` no violation and no mismatch is expected.  Any failing run is
printed with the `sessionguard replay --token ...` command that repeats it.

Usage::

    nice python benchmarks/fault_campaign.py --schedules 100000 --seed 1 --jobs 2

The schedule budget is split evenly over every (scenario, strategy) pair;
each pair's explorer gets its own seed, derived from --seed and printed, and
the exact command that repeats the whole campaign is printed first and last.
Exit code 1 when any run fails, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from sessionguard.cli import Parser, UsageError
from sessionguard.loop import HarnessOptions, explore_pct, explore_random
from sessionguard.model import DESIGNS
from sessionguard.model.vocabulary import FAULTS, KINDS, SHUTDOWN
from sessionguard.reference.harness import encode_token, failure_predicate, scenario_run
from sessionguard.reference.scenarios import SCENARIOS, Action, Fault, Scenario, Send

STRATEGIES = ("random", "pct")


def generated_scenarios(seed: int, count: int, sessions: int, messages: int) -> list[Scenario]:
    """`count` ad-hoc scenarios from `seed`: `messages` sends over `sessions` chats, every fault.

    The kinds are dealt round-robin from a shuffled deck so that, over the
    scenarios, every kind of message arrives in every session; the actions are
    split into one to three phases, so some faults and messages only arrive
    once the earlier ones have gone quiet (a wedged run, *then* /stop); shutdown
    is always in the last phase.
    """
    rng = random.Random(seed)
    out: list[Scenario] = []
    deck: list[str] = []
    for i in range(count):
        sends: list[Action] = []
        for m in range(messages):
            if not deck:
                deck = list(KINDS)
                rng.shuffle(deck)
            sends.append(Send(deck.pop(), key=m % sessions if m < sessions else rng.randrange(sessions)))
        actions: list[Action] = [*sends, *(Fault(f) for f in FAULTS)]
        rng.shuffle(actions)
        # The first action opens every scenario with a message, so there is work to fault.
        first = next(j for j, a in enumerate(actions) if isinstance(a, Send))
        actions.insert(0, actions.pop(first))
        cuts = sorted(rng.sample(range(1, len(actions)), rng.randrange(0, 3)))
        phases = [list(actions[a:b]) for a, b in zip([0, *cuts], [*cuts, len(actions)], strict=True)]
        # Shutdown ends everything after it, so it joins the last phase: the earlier
        # phases always run in full, and the last one races its messages against it.
        shutdown = Fault(SHUTDOWN)
        for phase in phases:
            if shutdown in phase:
                phase.remove(shutdown)
        phases[-1].append(shutdown)
        out.append(
            Scenario(
                f"campaign-{seed}-{i}",
                f"generated from seed {seed}: {messages} messages over {sessions} sessions, every fault",
                tuple(tuple(p) for p in phases if p),
            )
        )
    return out


@dataclass
class Chunk:
    """One (scenario, strategy) pair of the campaign and what it found."""

    design: str
    scenario: Scenario
    strategy: str
    runs: int
    seed: int
    depth: int
    schedules: int = 0
    seconds: float = 0.0
    verdicts: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    replays: list[str] = field(default_factory=list)


def run_chunk(chunk: Chunk) -> Chunk:
    factory = scenario_run(chunk.design, chunk.scenario)
    options: HarnessOptions = {
        # Any finding fails here, declared or not (`reference` declares none).
        "is_failure": failure_predicate(chunk.design, include_known=True),
        "stop_on_failure": False,
        "keep_failures": 3,
    }
    if chunk.strategy == "random":
        ex = explore_random(factory, runs=chunk.runs, seed=chunk.seed, **options)
    else:
        ex = explore_pct(factory, runs=chunk.runs, depth=chunk.depth, seed=chunk.seed, **options)
    chunk.schedules = ex.schedules
    chunk.seconds = ex.seconds
    chunk.verdicts = dict(ex.verdicts)
    chunk.failures = ex.failure_count
    chunk.replays = [
        f"sessionguard replay --token {encode_token(chunk.design, chunk.scenario, r.schedule)}" for r in ex.failures
    ]
    return chunk


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="fault_campaign", description=__doc__.split("\n\n")[0])
    p.add_argument("--design", choices=list(DESIGNS), default="reference",
                   help="design under test (default reference; prefix and seed show what a failure looks like)")
    p.add_argument("--schedules", type=positive, default=100_000, help="total schedules (default 100,000)")
    p.add_argument("--seed", type=int, default=1, help="campaign seed (default 1)")
    p.add_argument("--generated", type=int, default=8, help="ad-hoc scenarios generated from the seed (default 8)")
    p.add_argument("--sessions", type=positive, default=3, help="sessions per generated scenario (default 3)")
    p.add_argument("--messages", type=positive, default=6, help="messages per generated scenario (default 6)")
    p.add_argument("--depth", type=positive, default=3, help="PCT bug depth (default 3)")
    p.add_argument("--jobs", type=positive, default=1, help="processes (default 1)")
    p.add_argument("--no-named", action="store_true", help="only the generated scenarios")
    args = p.parse_args(argv)
    if args.generated < 0 or (args.generated == 0 and args.no_named):
        p.error("nothing to run: use --generated 1 or more, or drop --no-named")

    command = (
        f"python benchmarks/fault_campaign.py --design {args.design} --schedules {args.schedules} --seed {args.seed} "
        f"--generated {args.generated} --sessions {args.sessions} --messages {args.messages} "
        f"--depth {args.depth}" + (" --no-named" if args.no_named else "")
    )
    print(f"campaign: {command} (--jobs {args.jobs})", flush=True)
    scenarios = [] if args.no_named else list(SCENARIOS.values())
    scenarios += generated_scenarios(args.seed, args.generated, args.sessions, args.messages)
    pairs = [(sc, st) for sc in scenarios for st in STRATEGIES]
    base, extra = divmod(args.schedules, len(pairs))
    chunks = [
        Chunk(args.design, sc, st, base + (1 if i < extra else 0), args.seed * 100_003 + i, args.depth)
        for i, (sc, st) in enumerate(pairs)
    ]
    chunks = [c for c in chunks if c.runs > 0]
    for sc in scenarios[len(scenarios) - args.generated :] if args.generated else []:
        print(f"  {sc.name}: {sc.describe()}")

    started = time.perf_counter()
    total = failures = 0
    verdicts: dict[str, int] = {}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for c in pool.map(run_chunk, chunks):
            total += c.schedules
            failures += c.failures
            for v, n in c.verdicts.items():
                verdicts[v] = verdicts.get(v, 0) + n
            rate = c.schedules / c.seconds if c.seconds else float("inf")
            vs = ", ".join(f"{v}={n}" for v, n in sorted(c.verdicts.items()))
            print(
                f"  {c.scenario.name:<22} {c.strategy:<6} seed {c.seed:<9} {c.schedules:>6} schedules "
                f"{c.seconds:7.1f}s {rate:6.0f}/s  verdicts: {vs}; failing: {c.failures}",
                flush=True,
            )
            for line in c.replays:
                print(f"    FAILURE, replay: {line}", flush=True)
    wall = time.perf_counter() - started
    vs = ", ".join(f"{v}={n}" for v, n in sorted(verdicts.items()))
    print(
        f"total: {total:,} schedules over {len(scenarios)} scenarios x {len(STRATEGIES)} strategies in "
        f"{wall:.1f}s wall ({total / wall:,.0f} schedules/s with {args.jobs} job(s)); verdicts: {vs}; "
        f"failing runs (violations or mismatches): {failures}"
    )
    print(f"repeat: {command}")
    return 1 if failures else 0


def cli() -> int:
    """main() with bad arguments as one line and exit code 2 (sessionguard's convention)."""
    try:
        return main()
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
