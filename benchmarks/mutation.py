"""Mutation testing of the session-guard logic: does the test suite notice a wrong rule?

Each *mutant* is the project with one small change to one of the modules that
decide the guard's behaviour (the designs and properties in `model/`, the
asyncio adapter and its decisions in `reference/`): a comparison flipped, `and`
turned into `or`, `is` into `is not`, a `not` dropped, an `if` negated, a
number or a boolean changed, `+` turned into `-`, an assignment, a `del` or a
call deleted, a returned value replaced by `None`.  The module's targeted kill
suite (the tests that exercise it, fastest first, stopping at the first
failure) runs against each mutant; a mutant is *killed* when a test fails or
the suite times out, and *survives* otherwise.

    python benchmarks/mutation.py                        # every mutant of every module
    python benchmarks/mutation.py --module model/seed.py --jobs 2
    python benchmarks/mutation.py --limit 200 --seed 7   # a seeded sample of 200 mutants
    python benchmarks/mutation.py --list                 # the mutants, without running them
    python benchmarks/mutation.py --mutant model/seed.py:57:12:compare0

Score = killed / (total - equivalent).  A survivor that cannot be killed
because it does not change behaviour is recorded, with the reason, in
`benchmarks/mutation_equivalents.json`, keyed by file, enclosing function,
operator, the source before and after, and which of equal such mutants in that
function it is (not by line, so the entry survives edits elsewhere in the file).  Every other survivor is printed with the
command that re-runs it alone.

Why not mutmut: it maps a mutated file to tests through the import name of its
folder, and this project's folders are mapped into the `sessionguard.*`
namespace by `pyproject.toml`, so mutmut finds no test for any mutant.  Here a
mutant runs as a copy of the package tree (symlinks, plus the one mutated
file) put first on PYTHONPATH, so the repository itself is never modified.
"""

from __future__ import annotations

import ast
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from sessionguard.cli import Parser, UsageError

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = ROOT / "benchmarks" / "mutation_equivalents.json"

#: Where each top-level folder lives inside the installed `sessionguard` package.
PACKAGE_DIRS = {
    "sessionguard": "",
    "model": "model",
    "reference": "reference",
    "loop": "loop",
    "proofs": "proofs",
}

_MODEL_SUITE = ("tests/test_model_rules.py", "tests/test_mutation_kills.py", "tests/test_checker.py")
_REFERENCE_SUITE = (
    "tests/test_mutation_kills.py",
    "tests/test_reference_stateful.py",
    "tests/test_reference_explore.py",
)
#: The module under mutation -> its kill suite (fastest, most discriminating first).
SUITES: dict[str, tuple[str, ...]] = {
    "model/design.py": _MODEL_SUITE,
    "model/prefix.py": _MODEL_SUITE,
    "model/seed.py": _MODEL_SUITE,
    "model/reference.py": _MODEL_SUITE,
    "model/properties.py": _MODEL_SUITE,
    "model/world.py": _MODEL_SUITE,
    "reference/adapter.py": _REFERENCE_SUITE,
    "reference/decisions.py": _REFERENCE_SUITE,
}

#: Functions that only render text for people (narratives, reprs): not guard logic.
PRESENTATION = frozenset({"__repr__", "__str__", "describe", "summary"})

_FLIP_COMPARE: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}


@dataclass(frozen=True)
class Mutant:
    file: str  # relative to the repository, e.g. "model/seed.py"
    line: int
    col: int
    operator: str
    function: str  # the enclosing function's qualified name, "<module>" at top level
    before: str
    after: str
    # Source offsets of the replaced text (line, col) to (end_line, end_col), 1-based lines.
    span: tuple[int, int, int, int]
    # How many mutants before this one in the same function have the same operator and text
    # (two `True`s of one function are two mutants).
    occurrence: int = 0

    @property
    def ident(self) -> str:
        return f"{self.file}:{self.line}:{self.col}:{self.operator}"

    @property
    def key(self) -> str:
        """Stable across edits elsewhere in the file: no line numbers."""
        return f"{self.file}|{self.function}|{self.operator}|{self.before}|{self.after}|{self.occurrence}"

    def apply(self, source: str) -> str:
        lines = source.splitlines(keepends=True)
        start = sum(len(x) for x in lines[: self.span[0] - 1]) + _byte_col(lines[self.span[0] - 1], self.span[1])
        end = sum(len(x) for x in lines[: self.span[2] - 1]) + _byte_col(lines[self.span[2] - 1], self.span[3])
        return source[:start] + self.after + source[end:]


def _byte_col(line: str, col: int) -> int:
    """ast's col_offset counts UTF-8 bytes; convert to a str index."""
    return len(line.encode()[:col].decode(errors="ignore"))


# --- generating mutants -----------------------------------------------------------------


def _docstring_nodes(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0]))
                out.add(id(body[0].value))
    return out


def _walk(tree: ast.AST) -> Iterator[tuple[ast.AST, str, bool]]:
    """Every node with its enclosing function's qualified name and whether to skip it."""

    def visit(node: ast.AST, qual: list[str], skip: bool) -> Iterator[tuple[ast.AST, str, bool]]:
        yield node, ".".join(qual) or "<module>", skip
        for name, child in ast.iter_fields(node):
            children = child if isinstance(child, list) else [child]
            for c in children:
                if not isinstance(c, ast.AST):
                    continue
                inner = qual
                inner_skip = skip
                if isinstance(c, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    inner = [*qual, c.name]
                    inner_skip = skip or c.name in PRESENTATION
                # Annotations, imports and f-string text are not behaviour.
                if name in ("annotation", "returns") or isinstance(c, ast.Import | ast.ImportFrom | ast.JoinedStr):
                    inner_skip = True
                yield from visit(c, inner, inner_skip)

    yield from visit(tree, [], False)


def _seg(source_lines: list[str], node: ast.AST) -> str:
    text = ast.get_source_segment("".join(source_lines), node)
    return " ".join((text or ast.unparse(node)).split())


def mutants_of(file: str, source: str) -> list[Mutant]:
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    docstrings = _docstring_nodes(tree)
    out: list[Mutant] = []

    def add(node: ast.AST, operator: str, function: str, after: str) -> None:
        span = (node.lineno, node.col_offset, node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]
        before = _seg(lines, node)
        if before == after:
            return
        out.append(Mutant(file, span[0], span[1], operator, function, before, after, span))

    for node, function, skip in _walk(tree):
        if skip or id(node) in docstrings:
            continue
        if isinstance(node, ast.Compare):
            for i, cmp in enumerate(node.ops):
                flipped = _FLIP_COMPARE.get(type(cmp))
                if flipped is None:
                    continue
                new = ast.Compare(node.left, list(node.ops), node.comparators)
                new.ops[i] = flipped()
                add(node, f"compare{i}", function, f"({ast.unparse(new)})")
        elif isinstance(node, ast.BoolOp):
            other: ast.boolop = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            add(node, "boolop", function, f"({ast.unparse(ast.BoolOp(other, node.values))})")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            add(node, "drop-not", function, f"({ast.unparse(node.operand)})")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
            swapped: ast.operator = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
            # Not on text or sequences: `"a" - "b"` only raises, which any test notices.
            if not any(_is_sequence_literal(x) for x in (node.left, node.right)):
                add(node, "arith", function, f"({ast.unparse(ast.BinOp(node.left, swapped, node.right))})")
        elif isinstance(node, ast.Constant) and type(node.value) is bool:
            add(node, "bool", function, repr(not node.value))
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            add(node, "int+1", function, repr(node.value + 1))
            if node.value != 0:
                add(node, "int-to-0", function, "0")
        if isinstance(node, ast.If | ast.While | ast.IfExp) and not isinstance(node.test, ast.Compare | ast.UnaryOp | ast.BoolOp):
            add(node.test, "negate-if", function, f"(not {ast.unparse(node.test)})")
        if isinstance(node, ast.Assign | ast.AugAssign | ast.Delete) or (
            isinstance(node, ast.AnnAssign) and node.value is not None
        ) or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call | ast.Await)):
            if function != "<module>" and not _is_class_body(tree, node):
                add(node, "delete", function, "pass")
        if isinstance(node, ast.Return) and node.value is not None and function != "<module>":
            if not (isinstance(node.value, ast.Constant) and node.value.value is None):
                add(node, "return-none", function, "return None")
    seen: dict[str, int] = {}
    for i, m in enumerate(out):
        n = seen[m.key] = seen.get(m.key, -1) + 1
        out[i] = replace(m, occurrence=n)
    return out


def _is_sequence_literal(node: ast.AST) -> bool:
    return isinstance(node, ast.Tuple | ast.List | ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str)
    )


def _is_class_body(tree: ast.AST, stmt: ast.stmt) -> bool:
    """A class attribute (`name = "seed"`): deleting it only exposes the base's value."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and stmt in node.body:
            return True
    return False


#: Each module's source as the mutants were made from it: a mutant is applied to this
#: snapshot, never to the file as it is later (an edit meanwhile would shift the spans).
SOURCES: dict[str, str] = {}


def all_mutants(modules: list[str]) -> list[Mutant]:
    out: list[Mutant] = []
    for file in modules:
        source = SOURCES[file] = (ROOT / file).read_text()
        for m in mutants_of(file, source):
            mutated = m.apply(source)
            try:
                compile(mutated, file, "exec")
            except SyntaxError:
                continue  # e.g. a deletion that would leave a block empty of statements
            out.append(m)
    return out


# --- running mutants --------------------------------------------------------------------


class Workspace:
    """A package tree that mirrors the installed `sessionguard` through symlinks.

    Mutating a module replaces its symlink with a real file; restoring puts
    the symlink back.  Each worker has its own tree, so two mutants never meet.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self.package = base / "pkg" / "sessionguard"
        for folder, inside in PACKAGE_DIRS.items():
            target = self.package / inside if inside else self.package
            target.mkdir(parents=True, exist_ok=True)
            for path in (ROOT / folder).iterdir():
                if path.suffix in (".py", ".typed"):
                    (target / path.name).symlink_to(path)
        (base / "run").mkdir()

    def path_of(self, file: str) -> Path:
        folder, name = file.split("/", 1)
        inside = PACKAGE_DIRS[folder]
        return (self.package / inside / name) if inside else (self.package / name)

    def mutate(self, mutant: Mutant) -> None:
        path = self.path_of(mutant.file)
        source = SOURCES.get(mutant.file) or (ROOT / mutant.file).read_text()
        path.unlink()
        path.write_text(mutant.apply(source))
        self._forget_bytecode(path)

    def restore(self, mutant: Mutant) -> None:
        path = self.path_of(mutant.file)
        path.unlink()
        path.symlink_to(ROOT / mutant.file)
        self._forget_bytecode(path)

    @staticmethod
    def _forget_bytecode(path: Path) -> None:
        # A rewrite within the same second could leave a stale .pyc looking current.
        for pyc in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
            pyc.unlink()

    def run_suite(self, tests: tuple[str, ...], timeout: float) -> tuple[str, float, str]:
        """('passed' | 'failed' | 'timeout', seconds, the last lines of output)."""
        env = dict(os.environ, PYTHONPATH=str(self.base / "pkg"), PYTHONHASHSEED="0")
        cmd = [
            sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
            "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
            *(str(ROOT / t) for t in tests),
        ]
        started = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=self.base / "run", env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "timeout", time.perf_counter() - started, ""
        seconds = time.perf_counter() - started
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        return ("passed" if proc.returncode == 0 else "failed"), seconds, tail


def load_equivalents() -> dict[str, str]:
    if not EQUIVALENTS.exists():
        return {}
    entries = json.loads(EQUIVALENTS.read_text())
    return {
        f"{e['file']}|{e['function']}|{e['operator']}|{e['before']}|{e['after']}|{e.get('occurrence', 0)}": e["reason"]
        for e in entries
    }


def _sanity(ws: Workspace) -> None:
    """The workspace really runs the mutated file: a mutant that breaks import must fail."""
    probe = Mutant("model/world.py", 1, 0, "probe", "<module>", "", "raise ImportError('probe')\n", (1, 0, 1, 0))
    ws.mutate(probe)
    try:
        outcome, _, _ = ws.run_suite(("tests/test_model_rules.py",), timeout=120)
    finally:
        ws.restore(probe)
    if outcome != "failed":
        raise SystemExit("mutation: the workspace does not pick up mutated files; nothing would be measured")


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="mutation", description="Mutation testing of the session-guard logic.")
    p.add_argument("--module", action="append", choices=list(SUITES), help="mutate only this module (repeatable)")
    p.add_argument("--jobs", type=int, default=2, help="mutants run in parallel (default 2)")
    p.add_argument("--limit", type=int, default=None, help="run a seeded random sample of this many mutants")
    p.add_argument("--seed", type=int, default=1, help="seed of the sample (default 1)")
    p.add_argument("--mutant", action="append", default=None, help="run only this mutant (its id, as printed)")
    p.add_argument("--timeout", type=float, default=None, help="per-mutant timeout (default: 3x the clean run of the suite + 30 s: mutants run side by side, slower than the clean run alone)")
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    p.add_argument("--json", default=None, help="also write every result to this JSON file")
    args = p.parse_args(argv)
    if args.jobs < 1 or (args.limit is not None and args.limit < 1):
        p.error("--jobs and --limit must be at least 1")

    modules = args.module or list(SUITES)
    mutants = all_mutants(modules)
    if args.mutant:
        wanted = set(args.mutant)
        mutants = [m for m in mutants if m.ident in wanted]
        missing = wanted - {m.ident for m in mutants}
        if missing:
            p.error(f"no such mutant: {', '.join(sorted(missing))} (see --list; ids change when the file changes)")
    elif args.limit is not None and args.limit < len(mutants):
        mutants = sorted(random.Random(args.seed).sample(mutants, args.limit), key=lambda m: (m.file, m.line, m.col))
    if args.list:
        for m in mutants:
            print(f"{m.ident:<44} {m.function:<40} {m.before[:60]!r} -> {m.after[:60]!r}")
        print(f"{len(mutants)} mutants")
        return 0
    equivalents = load_equivalents()
    sample = f" --limit {args.limit} --seed {args.seed}" if args.limit else ""
    mods = "".join(f" --module {m}" for m in args.module or [])
    command = f"python benchmarks/mutation.py{mods}{sample}"
    print(f"mutation: {len(mutants)} mutants of {len(modules)} module(s), {args.jobs} job(s); {command}", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="sessionguard-mutation-"))
    try:
        spaces = [Workspace(tmp / f"w{i}") for i in range(args.jobs)]
        _sanity(spaces[0])
        # The clean run of each suite must pass, and sets the per-mutant timeout.
        timeouts: dict[tuple[str, ...], float] = {}
        for suite in sorted({SUITES[m.file] for m in mutants}):
            outcome, seconds, tail = spaces[0].run_suite(suite, timeout=1800)
            if outcome != "passed":
                print(f"mutation: the clean suite {' '.join(suite)} does not pass:\n{tail}", file=sys.stderr)
                return 2
            timeouts[suite] = args.timeout or 3 * seconds + 30
            print(f"  clean run of {' '.join(suite)}: {seconds:.1f}s (timeout {timeouts[suite]:.0f}s)", flush=True)

        free = list(spaces)
        lock = threading.Lock()
        results: list[tuple[Mutant, str, float, str]] = []
        started = time.perf_counter()

        def one(m: Mutant) -> None:
            with lock:
                ws = free.pop()
            try:
                ws.mutate(m)
                try:
                    outcome, seconds, tail = ws.run_suite(SUITES[m.file], timeouts[SUITES[m.file]])
                finally:
                    ws.restore(m)
            finally:
                with lock:
                    free.append(ws)
            status = {"passed": "survived", "failed": "killed", "timeout": "killed (timeout)"}[outcome]
            if status == "survived" and m.key in equivalents:
                status = "equivalent"
            with lock:
                results.append((m, status, seconds, tail))
                n = len(results)
                if status in ("survived",) or n % 25 == 0 or n == len(mutants):
                    rate = n / (time.perf_counter() - started)
                    print(f"  [{n}/{len(mutants)}, {rate * 60:.0f}/min] {status}: {m.ident} {m.before[:50]!r} -> {m.after[:50]!r}", flush=True)

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(one, mutants))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    results.sort(key=lambda r: (r[0].file, r[0].line, r[0].col, r[0].operator))
    report(results, command, time.perf_counter() - started)
    if args.json:
        rows = [
            {"id": m.ident, "key": m.key, "occurrence": m.occurrence, "status": s, "seconds": round(t, 2), "function": m.function,
             "before": m.before, "after": m.after}
            for m, s, t, _ in results
        ]
        tmp_json = Path(args.json + ".tmp")
        tmp_json.write_text(json.dumps(rows, indent=1))
        tmp_json.replace(args.json)
    return 0


def report(results: list[tuple[Mutant, str, float, str]], command: str, wall: float) -> None:
    by_file: dict[str, dict[str, int]] = {}
    for m, status, _, _ in results:
        counts = by_file.setdefault(m.file, {"total": 0, "killed": 0, "equivalent": 0, "survived": 0})
        counts["total"] += 1
        counts["killed" if status.startswith("killed") else status] += 1
    print(f"\n{'module':<24} {'mutants':>8} {'killed':>7} {'equiv.':>7} {'survived':>9} {'score':>7}")
    totals = {"total": 0, "killed": 0, "equivalent": 0, "survived": 0}
    for file, c in sorted(by_file.items()):
        for k in totals:
            totals[k] += c[k]
        print(f"{file:<24} {c['total']:>8} {c['killed']:>7} {c['equivalent']:>7} {c['survived']:>9} {_score(c):>7}")
    print(f"{'all':<24} {totals['total']:>8} {totals['killed']:>7} {totals['equivalent']:>7} {totals['survived']:>9} {_score(totals):>7}")
    timeouts = sum(1 for _, s, _, _ in results if s == "killed (timeout)")
    print(f"mutation score: {_score(totals)} = killed / (total - equivalent); {timeouts} killed by timeout; {wall:.0f}s wall")
    survivors = [(m, tail) for m, s, _, tail in results if s == "survived"]
    if survivors:
        print(f"\nsurvivors ({len(survivors)}): kill each with a test, or record why it is equivalent in {EQUIVALENTS.relative_to(ROOT)}")
        for m, _ in survivors:
            print(f"  {m.ident}  in {m.function}: {m.before[:70]!r} -> {m.after[:70]!r}")
            print(f"    re-run: python benchmarks/mutation.py --mutant {m.ident}")
    print(f"repeat: {command}")


def _score(c: dict[str, int]) -> str:
    judged = c["total"] - c["equivalent"]
    return f"{100 * c['killed'] / judged:.1f}%" if judged else "-"


def cli() -> int:
    """main() with bad arguments as one line and exit code 2 (sessionguard's convention)."""
    try:
        return main()
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
