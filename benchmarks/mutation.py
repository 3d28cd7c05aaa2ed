"""Mutation testing of the session-guard logic: does the test suite notice a wrong rule?

Each *mutant* is the project with one small change to one of the modules that
decide the guard's behaviour (the designs and properties in `model/`, the
asyncio adapter and its decisions in `reference/`): a comparison flipped, `and`
turned into `or`, `is` into `is not`, a `not` dropped, an `if` negated, a
number or a boolean changed, `+` turned into `-`, an assignment, a `del` or a
call deleted, a returned value replaced by `None`.  The module's targeted kill
suite (the tests that exercise it, fastest first, stopping at the first
failure) runs against each mutant; a mutant is *killed* when a test fails or
times out, and *survives* otherwise.

    python benchmarks/mutation.py --jobs 1               # every mutant of every module
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

How a mutant runs.  At the start the project (package tree, tests, README) is
copied to a snapshot, so edits to the repository during a run change nothing
in it; each worker copies the snapshot and writes one mutant at a time over
its module.  Two modes:

* `--mode fork` (the default) is a fork server: this process imports pytest,
  hypothesis and z3 once; each mutant runs in a forked child that drops every
  `sessionguard` module from sys.modules, puts its workspace's package tree
  first on sys.path (and on PYTHONPATH, for any interpreter a test starts),
  and runs `pytest.main` in-process.  That is faithful to a fresh interpreter:
  the parent never imports a test module nor runs a test, the preloaded
  packages hold no state of the project, every project module is imported
  again from the workspace, and the hash seed is 0 in both modes.  A
  self-check after each run requires that the module the tests imported is the
  workspace's mutated file (and a probe mutant that breaks the import must be
  killed before anything is measured).  Two savings come on top: each test
  has its own time limit (10x its clean time + 5 s, so a mutant that loops for
  ever costs seconds), and a test is skipped for a mutant when, in the clean
  run (traced once with sys.settrace), it never executed a line of the
  mutated text: such a test computes exactly what it computes on the clean
  tree, so skipping it cannot turn a kill into a survival.  Lines that run at
  import (module and class bodies, decorators, defaults) select every test;
  hypothesis tests (random examples) and tests that start a process (not
  traced) always run.
* `--mode subprocess` runs `python -m pytest` on the whole suite in a new
  interpreter per mutant: the plain reference (no test selection, no per-test
  limit; slower).

Hypothesis tests draw fresh random examples in every run (in both modes); the
working folder is emptied before each run, so no example database carries a
failure from one mutant to the next.

Why not mutmut: it maps a mutated file to tests through the import name of its
folder, and this project's folders are mapped into the `sessionguard.*`
namespace by `pyproject.toml`, so mutmut finds no test for any mutant.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

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

#: Exit codes of a mutant's run beyond pytest's own (0 all passed, 1 a test failed, 2-5 the
#: run could not start or collect).
TEST_TIMED_OUT = 90  # one test ran past its own limit (fork mode)
NOT_LOADED = 91  # the suite passed, but the module it imported is not the mutant: nothing measured

#: Third-party packages the kill suites import, loaded once by the fork server (never a
#: `sessionguard` module: each child imports those afresh, from its own tree).
PRELOAD = ("pytest", "_pytest.assertion.rewrite", "hypothesis", "hypothesis.stateful", "z3", "asyncio")


def module_name(file: str) -> str:
    """"model/seed.py" -> "sessionguard.model.seed"."""
    folder, name = file.split("/", 1)
    inside = PACKAGE_DIRS[folder]
    return ".".join(["sessionguard", *([inside] if inside else []), name.removesuffix(".py")])


def take_snapshot(base: Path) -> None:
    """The project as the mutants were made from it: the package tree laid out as installed,
    the tests, and the files tests read.  Every worker copies this, so an edit to the
    repository during a run (a new test, a change to the checker) changes nothing in it."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    package = base / "pkg" / "sessionguard"
    shutil.copytree(ROOT / "sessionguard", package, ignore=skip)
    for folder, inside in PACKAGE_DIRS.items():
        if inside:
            shutil.copytree(ROOT / folder, package / inside, ignore=skip)
    shutil.copytree(ROOT / "tests", base / "tests", ignore=skip)
    for name in ("README.md", "pyproject.toml"):
        shutil.copy2(ROOT / name, base / name)
    for file, source in SOURCES.items():
        Workspace.locate(base, file).write_text(source)


class Workspace:
    """One worker's copy of the snapshot, where one mutant at a time is written over its module.

    Each worker has its own copy, so two mutants never meet; restoring copies the
    module back from the snapshot.
    """

    def __init__(self, base: Path, snapshot: Path) -> None:
        self.base = base
        self.snapshot = snapshot
        shutil.copytree(snapshot, base)
        self.pkg = base / "pkg"
        self.run_dir = base / "run"
        self.output = base / "output.txt"
        self.timed_out = base / "timed-out.txt"
        self.plan = base / "plan.json"

    @staticmethod
    def locate(base: Path, file: str) -> Path:
        folder, name = file.split("/", 1)
        inside = PACKAGE_DIRS[folder]
        package = base / "pkg" / "sessionguard"
        return (package / inside / name) if inside else (package / name)

    def path_of(self, file: str) -> Path:
        return self.locate(self.base, file)

    def mutate(self, mutant: Mutant) -> None:
        path = self.path_of(mutant.file)
        path.write_text(mutant.apply(self.locate(self.snapshot, mutant.file).read_text()))
        self._forget_bytecode(path)

    def restore(self, mutant: Mutant) -> None:
        path = self.path_of(mutant.file)
        shutil.copyfile(self.locate(self.snapshot, mutant.file), path)
        self._forget_bytecode(path)

    @staticmethod
    def _forget_bytecode(path: Path) -> None:
        # A rewrite within the same second could leave a stale .pyc looking current.
        for pyc in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
            pyc.unlink()

    def pytest_args(self, tests: tuple[str, ...]) -> list[str]:
        return [
            "-x", "-q", "-p", "no:cacheprovider", "--rootdir", str(self.base),
            "-c", str(self.base / "pyproject.toml"), *(str(self.base / t) for t in tests),
        ]

    def fresh_run_dir(self) -> None:
        """An empty working folder per run: no hypothesis database carries a failing example
        from one mutant to the next, so a mutant's verdict does not depend on the order."""
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir()
        for path in (self.timed_out, self.plan):
            path.unlink(missing_ok=True)


@dataclass
class Run:
    """A suite running in a child process (its own process group, so a timeout ends it all)."""

    pid: int
    workspace: Workspace
    mutant: Mutant | None
    started: float
    deadline: float


def start(ws: Workspace, tests: tuple[str, ...], mutant: Mutant | None, fork: bool, plan: SuitePlan | None,
          timeout: float) -> Run:
    """Run the kill suite against `mutant` (None: the clean tree) in a child process.

    Fork mode runs pytest inside the forked child of this process, which has the
    heavy third-party packages (PRELOAD) imported already; subprocess mode
    replaces the child with a new interpreter that runs `python -m pytest`.
    """
    ws.fresh_run_dir()
    if mutant is not None:
        ws.mutate(mutant)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 3
        try:
            os.setpgid(0, 0)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            out = os.open(ws.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.chdir(ws.run_dir)
            os.environ["PYTHONPATH"] = str(ws.pkg)  # also for any interpreter a test starts
            os.environ["PYTHONHASHSEED"] = "0"
            if not fork:
                os.execv(sys.executable, [sys.executable, "-m", "pytest", *ws.pytest_args(tests)])
            code = _pytest_in_this_process(ws, tests, mutant, plan)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    now = time.perf_counter()
    return Run(pid, ws, mutant, now, now + timeout)


def _pytest_in_this_process(ws: Workspace, tests: tuple[str, ...], mutant: Mutant | None,
                            plan: SuitePlan | None) -> int:
    """The forked child's work: the same pytest run as `python -m pytest` in the workspace.

    Faithful to a fresh interpreter because nothing of the project survives the fork:
    every `sessionguard` module is dropped from sys.modules and the workspace's tree
    comes first on sys.path, so the package, the test modules (never imported by the
    parent) and the pytest plugin of the project are all imported from the workspace,
    mutant included; the preloaded packages hold no project state.  The hash seed is
    0 as in subprocess mode (cli() re-executes the runner with it).
    """
    for name in [n for n in sys.modules if n == "sessionguard" or n.startswith("sessionguard.")]:
        del sys.modules[name]
    # As `python -m pytest` with PYTHONPATH set: the working folder, then the package tree.
    sys.path[:1] = [str(ws.run_dir), str(ws.pkg)]
    importlib.invalidate_caches()
    clock = TestClock(ws, plan, mutant)
    plugins: list[object] = [clock]
    tracer = None
    if plan is None:
        # The clean run that makes the plan: time each test, then trace which lines it runs.
        code = int(pytest.main(ws.pytest_args(tests), plugins=plugins))
        if code == 0:
            tracer = Tracer(ws)
            tracer.install()
            code = int(pytest.main(ws.pytest_args(tests), plugins=[tracer]))
            sys.settrace(None)
            threading.settrace(None)  # type: ignore[arg-type,unused-ignore]
            ws.plan.write_text(json.dumps({"seconds": clock.seconds, **tracer.as_json()}))
        return code
    code = int(pytest.main(ws.pytest_args(tests), plugins=plugins))
    if mutant is not None:
        # Self-check: the module the tests imported must be the mutant's file.
        module = sys.modules.get(module_name(mutant.file))
        loaded = getattr(module, "__file__", None)
        if (module is None and code == 0) or (loaded is not None and Path(loaded) != ws.path_of(mutant.file)):
            print(f"mutation: the suite imported {loaded} instead of {ws.path_of(mutant.file)}")
            return NOT_LOADED
    return code


@dataclass
class SuitePlan:
    """What the clean run of a suite tells the runs of its mutants.

    `seconds`: each test's clean time (its limit is derived from it).  `lines`: for each
    test, the lines of the mutated modules it executes, counting the setup of any
    module- or session-scoped fixture it uses (which only the first such test runs).
    `everywhere`: lines run outside a test function (module and class bodies, decorators,
    default arguments, collection), which every test depends on.  `always`: tests that
    must run for every mutant because their coverage is not fixed: hypothesis tests
    (random examples) and tests that start a process (not traced).
    """

    seconds: dict[str, float]
    lines: dict[str, dict[str, set[int]]]
    everywhere: dict[str, set[int]]
    always: set[str]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SuitePlan:
        return cls(
            data["seconds"],
            {t: {f: set(ls) for f, ls in by_file.items()} for t, by_file in data["lines"].items()},
            {f: set(ls) for f, ls in data["everywhere"].items()},
            set(data["always"]),
        )

    def limit(self, nodeid: str) -> float | None:
        """Ten times the test's clean run plus 5 s: generous enough that a loaded machine
        never trips it, tight enough that an endless loop costs seconds."""
        clean = self.seconds.get(nodeid)
        return None if clean is None else 10 * clean + 5

    def selects(self, nodeid: str, mutant: Mutant) -> bool:
        """Whether this test can observe the mutant: it runs a line of the mutated text.

        A test that never executes the mutated code computes exactly what it computes
        on the clean tree (the first difference a mutant makes is where it runs), so
        skipping it cannot turn a kill into a survival.
        """
        span = set(range(mutant.span[0], mutant.span[2] + 1))
        if span & self.everywhere.get(mutant.file, set()) or nodeid in self.always:
            return True
        return bool(span & self.lines.get(nodeid, {}).get(mutant.file, set()))


class Tracer:
    """pytest plugin for the clean run that records which test executes which line of the
    mutated modules (sys.settrace, for the modules under mutation only)."""

    def __init__(self, ws: Workspace) -> None:
        self.files = {str(ws.path_of(f)): f for f in SUITES}
        self.everywhere: dict[str, set[int]] = {}
        self.lines: dict[str, dict[str, set[int]]] = {}
        self.fixture_lines: dict[int, dict[str, set[int]]] = {}
        self.always: set[str] = set()
        self.current = self.everywhere
        self.test = ""
        self.unfixed = (os.path.dirname(importlib.import_module("hypothesis").__file__ or ""), subprocess_file())

    def install(self) -> None:
        sys.settrace(self._call)
        threading.settrace(self._call)

    def _call(self, frame: Any, event: str, arg: Any) -> Any:
        code = frame.f_code
        file = self.files.get(code.co_filename)
        if file is None:
            if self.test and code.co_filename.startswith(self.unfixed):
                self.always.add(self.test)
            return None
        # A module or class body (no fresh locals) runs once, for every test after it.
        target = self.current if code.co_flags & inspect.CO_NEWLOCALS else self.everywhere
        lines = target.setdefault(file, set())
        lines.add(frame.f_lineno)

        def line(frame: Any, event: str, arg: Any) -> Any:
            if event == "line":
                lines.add(frame.f_lineno)
            return line

        return line

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: Any, nextitem: Any) -> Iterator[None]:
        self.test = item.nodeid
        self.current = self.lines.setdefault(item.nodeid, {})
        yield
        # What the wider fixtures it uses ran when they were set up (perhaps for another test).
        for name in item.fixturenames:
            defs = item._fixtureinfo.name2fixturedefs.get(name)
            for file, lines in self.fixture_lines.get(id(defs[-1]), {}).items() if defs else ():
                self.current.setdefault(file, set()).update(lines)
        self.test = ""
        self.current = self.everywhere

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef: Any, request: Any) -> Iterator[None]:
        if fixturedef.scope == "function":
            yield
            return
        outer = self.current
        self.current = self.fixture_lines.setdefault(id(fixturedef), {})
        yield
        self.current = outer

    def as_json(self) -> dict[str, Any]:
        return {
            "lines": {t: {f: sorted(ls) for f, ls in by_file.items()} for t, by_file in self.lines.items()},
            "everywhere": {f: sorted(ls) for f, ls in self.everywhere.items()},
            "always": sorted(self.always),
        }


def subprocess_file() -> str:
    import subprocess

    return subprocess.__file__


class TestClock:
    """pytest plugin for the forked child: times each test (setup to teardown), ends the
    child with TEST_TIMED_OUT when one runs past its limit (a mutant that loops for ever
    is then caught in seconds, not after the whole suite's timeout), and, for a mutant,
    deselects the tests that cannot observe it (SuitePlan.selects)."""

    def __init__(self, ws: Workspace, plan: SuitePlan | None, mutant: Mutant | None) -> None:
        self.ws = ws
        self.plan = plan
        self.mutant = mutant
        self.seconds: dict[str, float] = {}

    def pytest_collection_modifyitems(self, session: Any, config: Any, items: list[Any]) -> None:
        if self.plan is None or self.mutant is None:
            return
        plan, mutant = self.plan, self.mutant
        keep = [item for item in items if plan.selects(item.nodeid, mutant)]
        if len(keep) < len(items):
            config.hook.pytest_deselected(items=[item for item in items if item not in keep])
            items[:] = keep

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: Any, nextitem: Any) -> Iterator[None]:
        limit = self.plan.limit(item.nodeid) if self.plan else None
        if limit is not None:
            signal.signal(signal.SIGALRM, lambda *_: self._time_out(item.nodeid))
            signal.setitimer(signal.ITIMER_REAL, limit)
        started = time.perf_counter()
        yield
        signal.setitimer(signal.ITIMER_REAL, 0)
        self.seconds[item.nodeid] = time.perf_counter() - started

    def _time_out(self, nodeid: str) -> None:
        # Straight out, not an exception: the mutated code could catch an exception.
        self.ws.timed_out.write_text(nodeid)
        os._exit(TEST_TIMED_OUT)


@dataclass
class Outcome:
    status: str  # "passed" | "failed" | "timeout"
    seconds: float
    killed_by: str  # the failing test's id, "(collection)" or "(timeout)"; "" when passed
    tail: str


def finish(run: Run, exit_code: int | None) -> Outcome:
    """Classify a finished (exit_code) or timed-out (None) run and restore the workspace."""
    ws = run.workspace
    seconds = time.perf_counter() - run.started
    if run.mutant is not None:
        ws.restore(run.mutant)
    text = ws.output.read_text(errors="replace") if ws.output.exists() else ""
    tail = "\n".join(text.strip().splitlines()[-3:])
    if exit_code is None:
        return Outcome("timeout", seconds, "(suite timeout)", tail)
    if exit_code == TEST_TIMED_OUT:
        return Outcome("timeout", seconds, f"(timeout) {ws.timed_out.read_text()}", tail)
    if exit_code == NOT_LOADED:
        raise SystemExit(f"mutation: {text.strip().splitlines()[-1]}; nothing would be measured")
    if exit_code == 0:
        return Outcome("passed", seconds, "", tail)
    # Short-summary ids are relative to the working folder, one level below the workspace.
    failed = [t.removeprefix("../") for t in re.findall(r"^(?:FAILED|ERROR) (\S+)", text, re.M)]
    return Outcome("failed", seconds, failed[0] if failed else f"(exit {exit_code})", tail)


def wait(runs: list[Run]) -> tuple[Run, Outcome]:
    """The first of `runs` to finish or time out."""
    while True:
        for run in runs:
            pid, status = os.waitpid(run.pid, os.WNOHANG)
            if pid:
                return run, finish(run, os.waitstatus_to_exitcode(status))
            if time.perf_counter() > run.deadline:
                os.killpg(run.pid, signal.SIGKILL)
                os.waitpid(run.pid, 0)
                return run, finish(run, None)
        time.sleep(0.01)


def load_equivalents() -> dict[str, str]:
    if not EQUIVALENTS.exists():
        return {}
    entries = json.loads(EQUIVALENTS.read_text())
    return {
        f"{e['file']}|{e['function']}|{e['operator']}|{e['before']}|{e['after']}|{e.get('occurrence', 0)}": e["reason"]
        for e in entries
    }


def _sanity(ws: Workspace, fork: bool) -> None:
    """The workspace really runs the mutated file: a mutant that breaks import must fail."""
    probe = Mutant("model/world.py", 1, 0, "probe", "<module>", "", "raise ImportError('probe')\n", (1, 0, 1, 0))
    run = start(ws, ("tests/test_model_rules.py",), probe, fork, None, timeout=120)
    _, outcome = wait([run])
    if outcome.status != "failed":
        raise SystemExit("mutation: the workspace does not pick up mutated files; nothing would be measured")


@dataclass
class Result:
    mutant: Mutant
    status: str  # "killed", "killed (timeout)", "survived", "equivalent"
    outcome: Outcome


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="mutation", description="Mutation testing of the session-guard logic.")
    p.add_argument("--module", action="append", choices=list(SUITES), help="mutate only this module (repeatable)")
    p.add_argument("--jobs", type=int, default=2, help="mutants run in parallel (default 2)")
    p.add_argument("--limit", type=int, default=None, help="run a seeded random sample of this many mutants")
    p.add_argument("--seed", type=int, default=1, help="seed of the sample (default 1)")
    p.add_argument("--mutant", action="append", default=None, help="run only this mutant (its id, as printed)")
    p.add_argument("--mode", choices=("fork", "subprocess"), default="fork",
                   help="fork: pytest in a forked child of a process that has imported pytest, hypothesis and z3 "
                        "once (default); subprocess: a new interpreter per mutant (slower, the reference)")
    p.add_argument("--timeout", type=float, default=None, help="per-mutant timeout of the whole suite (default: 3x the clean run of the suite + 30 s)")
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    p.add_argument("--json", default=None, help="also write every result to this JSON file")
    args = p.parse_args(argv)
    if args.jobs < 1 or (args.limit is not None and args.limit < 1):
        p.error("--jobs and --limit must be at least 1")
    if args.timeout is not None and not 0 < args.timeout < 86400:
        p.error("--timeout must be a number of seconds above 0")
    if args.json and not Path(args.json).resolve().parent.is_dir():
        p.error(f"--json {args.json}: its folder does not exist; create it or choose another path")

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
    fork = args.mode == "fork"
    if fork:
        for name in PRELOAD:
            importlib.import_module(name)
    sample = f" --limit {args.limit} --seed {args.seed}" if args.limit else ""
    mods = "".join(f" --module {m}" for m in args.module or [])
    mode = "" if fork else " --mode subprocess"
    chosen = "".join(f" --mutant {m}" for m in args.mutant or [])
    command = f"python benchmarks/mutation.py{mods}{sample}{chosen}{mode}"
    files = len({m.file for m in mutants})
    print(f"mutation: {len(mutants)} mutants of {files} module(s), {args.jobs} job(s), {args.mode} mode; {command}", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="sessionguard-mutation-"))
    # Stopped with SIGTERM, still remove the workspaces (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    running: list[Run] = []
    try:
        snapshot = tmp / "snapshot"
        take_snapshot(snapshot)
        spaces = [Workspace(tmp / f"w{i}", snapshot) for i in range(args.jobs)]
        _sanity(spaces[0], fork)
        # The clean run of each suite must pass, and sets the timeouts.
        timeouts: dict[tuple[str, ...], float] = {}
        plans: dict[tuple[str, ...], SuitePlan | None] = {}
        for suite in sorted({SUITES[m.file] for m in mutants}):
            _, clean = wait([start(spaces[0], suite, None, fork, None, timeout=1800)])
            if clean.status != "passed":
                print(f"mutation: the clean suite {' '.join(suite)} does not pass:\n{clean.tail}", file=sys.stderr)
                return 2
            plans[suite] = plan = SuitePlan.from_json(json.loads(spaces[0].plan.read_text())) if fork else None
            # In fork mode the clean run also traced the suite; only its untraced part counts.
            untraced = sum(plan.seconds.values()) + 5 if plan else clean.seconds
            timeouts[suite] = args.timeout or 3 * untraced + 30
            print(f"  clean run of {' '.join(suite)}: {clean.seconds:.1f}s (timeout {timeouts[suite]:.0f}s)", flush=True)

        results: list[Result] = []
        todo = list(reversed(mutants))
        free = list(spaces)
        started = time.perf_counter()
        while todo or running:
            while todo and free:
                m = todo.pop()
                suite = SUITES[m.file]
                plan = plans[suite]
                if plan is not None and not any(plan.selects(t, m) for t in plan.seconds):
                    # No test of the suite runs this code: it survives without a run.
                    results.append(Result(m, "survived", Outcome("passed", 0.0, "", "no test runs this code")))
                    print(f"  [{len(results)}/{len(mutants)}] survived (no test runs it): {m.ident}", flush=True)
                    continue
                running.append(start(free.pop(), suite, m, fork, plan, timeouts[suite]))
            if not running:
                continue
            run, outcome = wait(running)
            running.remove(run)
            free.append(run.workspace)
            assert run.mutant is not None
            m = run.mutant
            status = {"passed": "survived", "failed": "killed", "timeout": "killed (timeout)"}[outcome.status]
            if status == "survived" and m.key in equivalents:
                status = "equivalent"
            results.append(Result(m, status, outcome))
            n = len(results)
            if status in ("survived",) or n % 25 == 0 or n == len(mutants):
                rate = n / (time.perf_counter() - started)
                print(f"  [{n}/{len(mutants)}, {rate * 60:.0f}/min] {status}: {m.ident} {m.before[:50]!r} -> {m.after[:50]!r}", flush=True)
    finally:
        for run in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)

    results.sort(key=lambda r: (r.mutant.file, r.mutant.line, r.mutant.col, r.mutant.operator))
    report(results, command, time.perf_counter() - started)
    if args.json:
        rows = [
            {"id": r.mutant.ident, "key": r.mutant.key, "occurrence": r.mutant.occurrence, "status": r.status,
             "seconds": round(r.outcome.seconds, 2), "killed_by": r.outcome.killed_by, "function": r.mutant.function,
             "before": r.mutant.before, "after": r.mutant.after}
            for r in results
        ]
        tmp_json = Path(args.json + ".tmp")
        tmp_json.write_text(json.dumps(rows, indent=1))
        tmp_json.replace(args.json)
    return 0


def report(results: list[Result], command: str, wall: float) -> None:
    by_file: dict[str, dict[str, int]] = {}
    for r in results:
        counts = by_file.setdefault(r.mutant.file, {"total": 0, "killed": 0, "equivalent": 0, "survived": 0})
        counts["total"] += 1
        counts["killed" if r.status.startswith("killed") else r.status] += 1
    print(f"\n{'module':<24} {'mutants':>8} {'killed':>7} {'equiv.':>7} {'survived':>9} {'score':>7}")
    totals = {"total": 0, "killed": 0, "equivalent": 0, "survived": 0}
    for file, c in sorted(by_file.items()):
        for k in totals:
            totals[k] += c[k]
        print(f"{file:<24} {c['total']:>8} {c['killed']:>7} {c['equivalent']:>7} {c['survived']:>9} {_score(c):>7}")
    print(f"{'all':<24} {totals['total']:>8} {totals['killed']:>7} {totals['equivalent']:>7} {totals['survived']:>9} {_score(totals):>7}")
    timeouts = [r for r in results if r.status == "killed (timeout)"]
    print(f"mutation score: {_score(totals)} = killed / (total - equivalent); {len(timeouts)} killed by timeout; {wall:.0f}s wall")
    for r in timeouts:
        print(f"  timeout: {r.mutant.ident} {r.outcome.killed_by}")
    survivors = [r.mutant for r in results if r.status == "survived"]
    if survivors:
        print(f"\nsurvivors ({len(survivors)}): kill each with a test, or record why it is equivalent in {EQUIVALENTS.relative_to(ROOT)}")
        for m in survivors:
            print(f"  {m.ident}  in {m.function}: {m.before[:70]!r} -> {m.after[:70]!r}")
            print(f"    re-run: python benchmarks/mutation.py --mutant {m.ident}")
    print(f"repeat: {command}")


def _score(c: dict[str, int]) -> str:
    judged = c["total"] - c["equivalent"]
    return f"{100 * c['killed'] / judged:.1f}%" if judged else "-"


def cli() -> int:
    """main() with bad arguments as one line and exit code 2 (sessionguard's convention)."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        # Every run of a suite, forked or not, sees the same set and dict order as the last.
        os.execve(sys.executable, [sys.executable, *sys.argv], dict(os.environ, PYTHONHASHSEED="0"))
    try:
        return main()
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
