"""`sessionguard export --promela`: a design at one bound, as a Promela model for Spin.

The model is generated from the same bound as `sessionguard check` (same
options, same defaults) and is built so that Spin, with its partial-order
reduction off, stores exactly as many states as `sessionguard check
--no-symmetry --no-merge-history` finds; docs/spin.md tells how and how to run
the comparison.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any

from sessionguard.cli import EXIT_OK, UsageError, bounded_int, csv
from sessionguard.commands.check import DEFAULT_KINDS, DEFAULTS, LIMITS


def add_parser(sub: Any) -> None:
    from sessionguard.model.promela import DESIGN_NAMES
    from sessionguard.model.vocabulary import FAULTS

    p = sub.add_parser("export", help="write a design at one bound as a Promela model for Spin")
    p.add_argument("--promela", action="store_true", help="write Promela (the one format so far; required)")
    p.add_argument("--design", required=True, choices=DESIGN_NAMES)
    for name, (low, high) in LIMITS.items():
        p.add_argument(
            f"--{name}",
            type=bounded_int(name, low, high),
            default=DEFAULTS[name],
            help=f"{name} in the bound, {low} to {high} (default {DEFAULTS[name]}, as for check)",
        )
    p.add_argument("--kinds", type=csv, default=None,
                   help=f"inbound kinds, comma-separated (default: all of {','.join(DEFAULT_KINDS)})")
    p.add_argument("--fault-kinds", type=csv, default=None, help=f"faults to inject (default all: {','.join(FAULTS)})")
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="write here (default: standard output)")


def run(args: argparse.Namespace) -> int:
    from sessionguard.model.promela import PromelaError, generate
    from sessionguard.model.vocabulary import FAULTS, Bounds

    if not args.promela:
        raise UsageError("export: name the format: add --promela")
    kinds = tuple(args.kinds) if args.kinds is not None else DEFAULT_KINDS
    if not kinds:
        raise UsageError("export: --kinds is empty: name at least one message kind")
    fault_kinds = tuple(args.fault_kinds) if args.fault_kinds is not None else FAULTS
    try:
        # Bounds checks the kind and fault names; its message lists the known ones.
        bounds = Bounds(messages=args.messages, faults=args.faults, sessions=args.sessions,
                        kinds=kinds, fault_kinds=fault_kinds)
        source = generate(args.design, bounds)
    except (ValueError, PromelaError) as exc:
        raise UsageError(f"export: {exc}") from None
    if args.output is None:
        sys.stdout.write(source)
        return EXIT_OK
    write_atomically(args.output, source)
    print(f"wrote {args.output}: design {args.design}, {bounds.messages} messages, "
          f"{bounds.faults} fault(s), {bounds.sessions} session(s)", file=sys.stderr)
    return EXIT_OK


def write_atomically(path: str, text: str) -> None:
    """Write all of `text` or nothing: a temporary file in the same folder, then a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"export: folder {folder} does not exist: create it or choose another -o")
    if os.path.isdir(path):
        raise UsageError(f"export: {path} is a folder: give a file name to -o")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".pml", dir=folder)
    except OSError as exc:
        raise UsageError(f"export: cannot write in {folder} ({exc.strerror}): choose another -o") from None
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        raise UsageError(f"export: cannot write {path} ({exc.strerror}): choose another -o") from None
