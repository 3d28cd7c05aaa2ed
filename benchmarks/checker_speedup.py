"""The checker of a git revision against the working tree, side by side.

    python benchmarks/checker_speedup.py                 # against HEAD
    python benchmarks/checker_speedup.py --base v0.1 --rounds 5

The model code of the base revision (`git show`, nothing in the working tree
changes) is put in a temporary folder; each round then runs every workload
once with the base and once with the working tree, alternately, each in a
fresh process, so that a busy machine slows both alike.  Prints the fastest
time of each, the ratio base / working tree, and whether both found the same
number of states and transitions and the same verdicts (a speed-up must not
change any of them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: (name, design, bounds as keyword arguments of Bounds); the checker's defaults otherwise.
WORKLOADS = [
    ("3 messages, 4 kinds", "seed", {"messages": 3, "faults": 1}),
    ("4 messages (text,/stop)", "prefix", {"messages": 4, "faults": 1, "kinds": ["text", "/stop"]}),
    ("4 messages (text,/stop)", "seed", {"messages": 4, "faults": 1, "kinds": ["text", "/stop"]}),
    ("4 messages (text,/stop)", "reference", {"messages": 4, "faults": 1, "kinds": ["text", "/stop"]}),
    ("4 messages, 4 kinds", "reference", {"messages": 4, "faults": 1}),
]

RUN = """
import json, sys, time
import sessionguard.model.world
from sessionguard.model import DESIGNS, Bounds, CheckerConfig, check
design, kw = sys.argv[1], json.loads(sys.argv[2])
if "kinds" in kw:
    kw["kinds"] = tuple(kw["kinds"])
started = time.perf_counter()
r = check(DESIGNS[design], Bounds(**kw), CheckerConfig())
seconds = time.perf_counter() - started
print(json.dumps({"module": sessionguard.model.world.__file__, "seconds": seconds, "states": r.stats.states, "transitions": r.stats.transitions,
                  "verdicts": [[v.prop.name, v.status, len(v.trace) if v.trace else 0] for v in r.verdicts]}))
"""


def base_tree(rev: str, into: str) -> None:
    """The importable `sessionguard` package (its model included) as of `rev`."""
    files = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "sessionguard", "model"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        target = Path(into) / ("sessionguard/model/" + name[len("model/"):] if name.startswith("model/") else name)
        target.parent.mkdir(parents=True, exist_ok=True)
        blob = subprocess.run(["git", "show", f"{rev}:{name}"], cwd=REPO, capture_output=True, check=True).stdout
        target.write_bytes(blob)


def measure(design: str, bounds: dict[str, object], base: str | None) -> dict[str, object]:
    """One check in a fresh process: with the base tree first on the path, or as installed."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if base:
        env["PYTHONPATH"] = base
    # Run from a neutral folder: `python -c` puts the current folder first on the path.
    out = subprocess.run([sys.executable, "-c", RUN, design, json.dumps(bounds)], env=env,
                         cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True).stdout
    result: dict[str, object] = json.loads(out)
    module = str(result["module"])
    if base and not module.startswith(base):
        raise SystemExit(f"the base run imported {module}, not the base tree in {base}")
    if not base and not module.startswith(str(REPO)):
        raise SystemExit(f"the working-tree run imported {module}, not {REPO}: install with pip install -e .")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="HEAD", help="git revision to compare with (default HEAD)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side per workload (default 3)")
    parser.add_argument("--quick", action="store_true", help="the first workload only")
    args = parser.parse_args()
    workloads = WORKLOADS[:1] if args.quick else WORKLOADS
    print(f"base {args.base} against the working tree; fastest of {args.rounds} alternating runs each")
    print(f"  {'bound':<26} {'design':<10} {'states':>9} {'base s':>8} {'now s':>8} {'base/now':>9}  same result")
    same_everywhere = True
    with tempfile.TemporaryDirectory(prefix="sessionguard-base-") as tmp:
        base_tree(args.base, tmp)
        for title, design, bounds in workloads:
            base, now = [], []
            for _ in range(args.rounds):
                base.append(measure(design, bounds, tmp))
                now.append(measure(design, bounds, None))
            same = all({k: r[k] for k in ("states", "transitions", "verdicts")}
                       == {k: base[0][k] for k in ("states", "transitions", "verdicts")} for r in base + now)
            same_everywhere &= same
            b = min(float(str(r["seconds"])) for r in base)
            n = min(float(str(r["seconds"])) for r in now)
            print(f"  {title:<26} {design:<10} {now[0]['states']:>9,} {b:>8.2f} {n:>8.2f} {b / n:>9.2f}  "
                  f"{'yes' if same else 'NO: states, transitions or verdicts differ'}", flush=True)
    return 0 if same_everywhere else 1


if __name__ == "__main__":
    raise SystemExit(main())
