"""Bad input to any `sessionguard` command never gets a traceback, a hang or half a file.

Every command is fuzzed in-process (`sessionguard.cli.main(argv)`) with
Hypothesis: malformed, truncated, wrong-typed and absurd arguments, and
malformed, truncated and wrong-typed input files and replay tokens made by
corrupting real ones (a `check --format json` report, an `explore --save`
replay file, an `explore --format json` output, a replay token).  Each call
must end in one of two ways: exit 2 with exactly one line on stderr that
starts with "error: " and no output file left behind, or a normal result
(exit 0 or 1) with nothing on stderr.  A call that runs past its time limit
fails the test as a hang.

Commands that are not installed (each is a separate module) are skipped.  The
runs here are small; `-m slow` runs the same properties with many more
examples, and runs `prove` for real.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import io
import json
import os
import re
import signal
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from sessionguard.cli import COMMANDS, build_parser, main

FLAGS = ["--design", "--messages", "--faults", "--sessions", "--kinds", "--fault-kinds",
         "--property", "--format", "--max-states", "--max-seconds", "--jobs"]
ABSURD = ["", "-1", "0", "99999999999", "nan", "inf", "-inf", "1e9", "text,", ",,", "/stop,/dance",
          "prefix", "seed", "reference", "all", "json", "xml", "html", "no-orphan-guard", "order",
          "\x00", "é", " 3 ", "-", "--", "2", "1.5", "0x10", "true", "null", "[]", "{}", "all-faults",
          "followups", "dfs", "pct", "random", "none", "sleep", "dpor"]
JUNK = st.one_of(st.sampled_from(ABSURD), st.text(max_size=12))
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FUZZ_SLOW = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def installed(command: str) -> bool:
    try:
        importlib.import_module(f"sessionguard.commands.{command}")
    except ModuleNotFoundError:
        return False
    return True


def needs(command: str) -> Any:
    return pytest.mark.skipif(not installed(command), reason=f"sessionguard {command} is not installed")


# --- calling a command and judging how it ended ---------------------------------------


class Hang(BaseException):
    """Raised in the command by the alarm: it ran past its time limit.

    A BaseException, so that no `except Exception` of the command swallows it.
    """


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def call(argv: list[str], seconds: float = 60) -> tuple[int, str, str]:
    """Run `sessionguard argv` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), time_limit(seconds):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's --help and --version
            code = exc.code if isinstance(exc.code, int) else 0
    return code, out.getvalue(), err.getvalue()


def assert_handled(argv: list[str], code: int, out: str, err: str, outputs: tuple[str, ...] = ()) -> None:
    shown = " ".join(repr(a) if not a or " " in a or not a.isprintable() else a for a in argv)
    assert "Traceback" not in err, f"sessionguard {shown}\n{err}"
    if code == 2:
        assert err.startswith("error: ") and err.count("\n") == 1, f"sessionguard {shown}: not one line:\n{err}"
        for path in outputs:
            assert not os.path.exists(path), f"sessionguard {shown}: exit 2 but {path} was written"
    else:
        assert code in (0, 1), f"sessionguard {shown}: exit {code}\n{err}"
        assert not err.startswith("error: "), f"sessionguard {shown}: an error, but exit {code}\n{err}"


def run_and_judge(argv: list[str], outputs: tuple[str, ...] = (), seconds: float = 60) -> tuple[int, str, str]:
    code, out, err = call(argv, seconds)
    assert_handled(argv, code, out, err, outputs)
    return code, out, err


# --- real input files and tokens, made once ----------------------------------------------


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A check JSON report, a replay file, an explore JSON output and a replay token, all real."""
    folder = tmp_path_factory.mktemp("samples")
    code, check_json, _ = call(["check", "--design", "prefix", "--format", "json", "--jobs", "1"])
    assert code == 0
    replay_file = folder / "trap.json"
    code, explore_json, _ = call(["explore", "--design", "prefix", "--scenario", "cancelled-task",
                                  "--strategy", "random", "--schedules", "5", "--seed", "1",
                                  "--save", str(replay_file), "--format", "json"])
    assert code == 0 and replay_file.exists()
    token = re.search(r"--token (\S+)", call(["explore", "--design", "prefix", "--scenario", "cancelled-task",
                                               "--strategy", "random", "--schedules", "5", "--seed", "1"])[1])
    assert token is not None
    return {
        "check": json.loads(check_json),
        "replay": json.loads(replay_file.read_text()),
        "explore": json.loads(explore_json),
        "token": token.group(1),
    }


# --- corrupting a document, a step at a time -------------------------------------------------


JSON_JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False), st.text(max_size=8),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def paths(doc: Any, prefix: tuple[Any, ...] = (), depth: int = 0) -> list[tuple[Any, ...]]:
    """Every place in a JSON document (up to a depth, and a few items of each list)."""
    out = [prefix]
    if depth >= 6:
        return out
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += paths(value, (*prefix, key), depth + 1)
    elif isinstance(doc, list):
        for i, value in enumerate(doc[:3]):
            out += paths(value, (*prefix, i), depth + 1)
    return out


def replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(doc))
    node = copy
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return copy


def removed(doc: Any, path: tuple[Any, ...]) -> Any:
    if not path:
        return {}
    copy = json.loads(json.dumps(doc))
    node = copy
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return copy


@st.composite
def corrupted(draw: st.DrawFn, doc: Any) -> bytes:
    """The bytes of a file made from `doc` by one corruption: truncated, a value of the wrong
    type, a key missing, a list emptied, not UTF-8, not JSON at all."""
    text = json.dumps(doc)
    how = draw(st.sampled_from(["truncate", "retype", "remove", "empty-list", "bytes", "junk-text"]))
    if how == "truncate":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))].encode()
    if how == "bytes":
        return draw(st.binary(max_size=40)) + text.encode()[: draw(st.integers(0, 40))]
    if how == "junk-text":
        return draw(st.text(max_size=30)).encode()
    path = draw(st.sampled_from(paths(doc)))
    if how == "retype":
        return json.dumps(replaced(doc, path, draw(JSON_JUNK))).encode()
    if how == "remove":
        return json.dumps(removed(doc, path) if path else draw(JSON_JUNK)).encode()
    return json.dumps(replaced(doc, path, [])).encode()


def token_of(data: Any) -> str:
    raw = zlib.compress(json.dumps(data).encode(), 9)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@st.composite
def corrupted_token(draw: st.DrawFn, token: str) -> str:
    """A replay token cut short, with a character changed, or well-encoded with wrong fields."""
    how = draw(st.sampled_from(["truncate", "change", "junk", "fields"]))
    if how == "truncate":
        return token[: draw(st.integers(0, len(token) - 1))]
    if how == "change":
        i = draw(st.integers(0, len(token) - 1))
        return token[:i] + draw(st.sampled_from("A_-=+/ 0z\x00é")) + token[i + 1:]
    if how == "junk":
        return draw(st.text(max_size=40))
    padded = token + "=" * (-len(token) % 4)
    data = json.loads(zlib.decompress(base64.urlsafe_b64decode(padded)))
    key = draw(st.sampled_from(sorted(data)))
    value = draw(st.one_of(JSON_JUNK, st.just({"name": "x", "phases": [[{"send": "text", "key": "k"}]]}),
                           st.just({"phases": 3}), st.just([[1, 2]]), st.just(["0", [1]])))
    return token_of({**data, key: value})


def write(folder: str, name: str, content: bytes) -> str:
    path = os.path.join(folder, name)
    with open(path, "wb") as fh:
        fh.write(content)
    return path


# --- arguments -----------------------------------------------------------------------------


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(FLAGS), JUNK), min_size=1, max_size=4))
def test_check_arguments(pairs):
    argv = ["check"]
    for flag, value in pairs:
        argv += [flag, value]
    # The budget comes last (argparse keeps the last value), so that valid absurd bounds end fast.
    run_and_judge([*argv, "--max-states", "50", "--max-seconds", "5", "--jobs", "1"])


EXPLORE_FLAGS = ["--design", "--scenario", "--strategy", "--schedules", "--seed", "--depth", "--format",
                 "--reduction"]


def explore_argv(pairs: list[tuple[str, str]], extra: list[str]) -> list[str]:
    argv = ["explore"]
    for flag, value in pairs:
        argv += [flag, value]
    return [*argv, *extra, "--schedules", "2", "--max-seconds", "2", "--no-shrink"]


@needs("explore")
@FUZZ
@given(st.lists(st.tuples(st.sampled_from(EXPLORE_FLAGS), JUNK), min_size=1, max_size=3),
       st.sampled_from([[], ["--keep-going"], ["--list"]]))
def test_explore_arguments(pairs, extra):
    run_and_judge(explore_argv(pairs, extra))


@needs("explore")
@FUZZ
@given(st.one_of(st.sampled_from(ABSURD), st.floats().map(str)))
def test_explore_time_budget(value):
    """A time budget that is not a positive, finite number of seconds is refused."""
    code, _, err = run_and_judge(["explore", "--scenario", "followups", "--max-seconds", value, "--schedules", "2"])
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is None or not 0 < number < float("inf"):
        assert code == 2, (value, err)


@needs("explore")
def test_explore_save_is_not_half_written(tmp_path):
    """--save to a folder that does not exist: one line, no file; to a good place: a replay file."""
    missing = str(tmp_path / "no" / "such" / "trap.json")
    run_and_judge(["explore", "--design", "prefix", "--scenario", "cancelled-task", "--schedules", "3",
                   "--save", missing], outputs=(missing,))
    good = tmp_path / "trap.json"
    code, _, _ = run_and_judge(["explore", "--design", "prefix", "--scenario", "cancelled-task",
                                "--schedules", "5", "--seed", "1", "--save", str(good)])
    assert code == 0 and "schedule" in json.loads(good.read_text())


REPLAY_FLAGS = ["--token", "--design", "--format"]


@needs("replay")
@FUZZ
@given(st.lists(st.tuples(st.sampled_from(REPLAY_FLAGS), JUNK), max_size=3), st.lists(JUNK, max_size=2))
@example(pairs=[], positional=["\n"])  # a file name with a newline: still one line
def test_replay_arguments(pairs, positional):
    argv = ["replay", *positional]
    for flag, value in pairs:
        argv += [flag, value]
    run_and_judge(argv)


EXPLAIN_FLAGS = ["--design", "--property", "--from", "--token", "--scenario", "--depth", "--messages",
                 "--faults", "--sessions", "--kinds", "--fault-kinds", "--format"]
SMALL_BOUNDS = {"--messages", "--faults", "--sessions"}


@needs("explain")
@FUZZ
@given(st.lists(st.tuples(st.sampled_from(EXPLAIN_FLAGS), JUNK), min_size=1, max_size=4))
def test_explain_arguments(pairs):
    for flag, value in pairs:
        # A bound above the default bound is valid and merely slow: not what this test is about.
        assume(not (flag in SMALL_BOUNDS and value.strip().isdigit() and int(value) > 3))
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "report.html")
        argv = ["explain"]
        for flag, value in pairs:
            argv += [flag, value]
        code, _, _ = run_and_judge([*argv, "-o", out], outputs=(out,))
        if code == 0:
            assert os.path.getsize(out) > 0


def test_explain_output_to_a_missing_folder_leaves_nothing(tmp_path):
    out = str(tmp_path / "missing" / "x.md")
    code, _, _ = run_and_judge(["explain", "--design", "prefix", "--property", "no-orphan-guard",
                                "--messages", "1", "--kinds", "text", "-o", out],
                               outputs=(out,))
    assert code == 2


PROVE_FLAGS = ["--design", "--property", "--format", "--depth", "--timeout", "--mutation"]


class Reached(BaseException):
    """The prover was called: every argument was accepted."""


@needs("prove")
@FUZZ
@given(st.lists(st.tuples(st.sampled_from(PROVE_FLAGS), JUNK), min_size=1, max_size=3))
def test_prove_arguments_are_checked_before_z3_runs(monkeypatch, pairs):
    """Bad arguments are refused before any proof starts (the proofs themselves run in the
    slow tests, and in tests/test_proofs.py)."""
    import sessionguard.proofs.prove as prove_module

    def prove(*args: object, **kwargs: object) -> None:
        raise Reached

    monkeypatch.setattr(prove_module, "prove", prove)
    argv = ["prove"]
    for flag, value in pairs:
        argv += [flag, value]
    try:
        run_and_judge(argv)
    except Reached:
        pass


@needs("conform")
@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["--binding", "--scenario", "--strategy", "--budget-seconds",
                                           "--schedules", "--seed", "--format", "--replay"]), JUNK),
                min_size=1, max_size=3),
       st.sampled_from(["", "nosuchmodule:Adapter", "os:path", "json", ":", "sessionguard.cli:Nope"]))
def test_conform_arguments(pairs, target):
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "report.xml")
        argv = ["conform", target]
        for flag, value in pairs:
            argv += [flag, value]
        run_and_judge([*argv, "-o", out], outputs=(out,))


EXPORT_FLAGS = ["--design", "--messages", "--faults", "--sessions", "--kinds", "--fault-kinds"]


@needs("export")
@FUZZ
@given(st.lists(st.tuples(st.sampled_from(EXPORT_FLAGS), JUNK), min_size=1, max_size=4),
       st.sampled_from([["--promela"], []]), st.sampled_from(["model.pml", "missing/model.pml", "."]))
def test_export_arguments(pairs, promela, target):
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, target)
        argv = ["export", *promela]
        for flag, value in pairs:
            argv += [flag, value]
        code, _, _ = run_and_judge([*argv, "-o", out], outputs=(out,) if target != "." else ())
        if code == 0:
            assert os.path.getsize(out) > 0


def value_options() -> list[tuple[str, str]]:
    """(command, option) for every option of every installed command that takes a value."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    out = []
    for command, p in sub.choices.items():  # type: ignore[union-attr]
        for action in p._actions:
            if action.option_strings and action.nargs != 0:
                out.append((command, action.option_strings[-1]))
    return out


@pytest.mark.parametrize("command", [c for c in COMMANDS if installed(c)])
def test_every_command_refuses_an_unknown_option_in_one_line(command):
    code, _, err = run_and_judge([command, "--no-such-option", "1"])
    assert code == 2  # (the message may name a missing required argument first)


@pytest.mark.parametrize("command,option", value_options())
def test_every_option_without_its_value_is_one_line(command, option):
    code, _, err = run_and_judge([command, "x:y", option] if command == "conform" else [command, option])
    assert code == 2 and option in err


# --- input files and tokens ----------------------------------------------------------------


@needs("replay")
@FUZZ
@given(st.data())
def test_replay_of_a_corrupted_file(samples, data):
    kind = data.draw(st.sampled_from(["replay", "replay", "check", "explore"]))
    content = data.draw(corrupted(samples[kind]))
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, "input.json", content)
        run_and_judge(["replay", path])


@needs("replay")
@FUZZ
@given(st.data())
def test_replay_of_a_corrupted_token(samples, data):
    run_and_judge(["replay", "--token", data.draw(corrupted_token(samples["token"]))])


@needs("explain")
@FUZZ
@given(st.data())
def test_explain_from_a_corrupted_file(samples, data):
    kind = data.draw(st.sampled_from(["check", "replay", "explore"]))
    content = data.draw(corrupted(samples[kind]))
    fmt = data.draw(st.sampled_from(["text", "markdown", "html"]))
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, "input.json", content)
        out = os.path.join(folder, "out." + fmt)
        code, _, _ = run_and_judge(["explain", "--from", path, "--format", fmt, "-o", out], outputs=(out,))
        if code == 0:
            assert os.path.getsize(out) > 0


@needs("explain")
@FUZZ
@given(st.data())
def test_explain_of_a_corrupted_token(samples, data):
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "out.md")
        run_and_judge(["explain", "--token", data.draw(corrupted_token(samples["token"])), "-o", out],
                      outputs=(out,))


def test_input_that_is_not_a_file(tmp_path):
    """A folder, a missing file, an unreadable one: one line each."""
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    secret.chmod(0)
    for path in (str(tmp_path), str(tmp_path / "missing.json"), str(secret)):
        if installed("replay"):
            assert run_and_judge(["replay", path])[0] == 2 or os.geteuid() == 0
        if installed("explain"):
            assert run_and_judge(["explain", "--from", path])[0] == 2 or os.geteuid() == 0


def test_the_samples_themselves_are_accepted(samples, tmp_path):
    """The uncorrupted files and token give a normal result: the fuzzing starts from valid input."""
    replay_file = tmp_path / "trap.json"
    replay_file.write_text(json.dumps(samples["replay"]))
    assert run_and_judge(["replay", str(replay_file)])[0] == 0
    assert run_and_judge(["replay", "--token", samples["token"]])[0] == 0
    if installed("explain"):
        check_file = tmp_path / "check.json"
        check_file.write_text(json.dumps(samples["check"]))
        out = str(tmp_path / "x.md")
        argv = ["explain", "--from", str(check_file), "--design", "prefix", "--property", "no-orphan-guard"]
        assert run_and_judge([*argv, "-o", out])[0] == 0
        assert Path(out).read_text()


def test_no_command_prints_help_and_exits_two():
    code, out, _ = call([])
    assert code == 2 and "check" in out


def test_version():
    code, out, _ = call(["--version"])
    assert code == 0 and out.startswith("sessionguard ")


# --- the same, at length ----------------------------------------------------------------


@pytest.mark.slow
@FUZZ_SLOW
@given(st.lists(st.tuples(st.sampled_from(EXPLORE_FLAGS), JUNK), min_size=1, max_size=4),
       st.sampled_from([[], ["--keep-going"]]))
def test_explore_arguments_at_length(pairs, extra):
    run_and_judge(explore_argv(pairs, extra))


@pytest.mark.slow
@FUZZ_SLOW
@given(st.data())
def test_input_files_and_tokens_at_length(samples, data):
    kind = data.draw(st.sampled_from(["replay", "check", "explore"]))
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, "input.json", data.draw(corrupted(samples[kind])))
        run_and_judge(["replay", path])
        if installed("explain"):
            out = os.path.join(folder, "out.html")
            run_and_judge(["explain", "--from", path, "--format", "html", "-o", out], outputs=(out,))
        token = data.draw(corrupted_token(samples["token"]))
        run_and_judge(["replay", "--token", token])


@pytest.mark.slow
@settings(max_examples=12, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PROVE_FLAGS), JUNK), min_size=1, max_size=2))
def test_prove_for_real(pairs):
    argv = ["prove"]
    for flag, value in pairs:
        argv += [flag, value]
    run_and_judge([*argv, "--depth", "2", "--timeout", "5"], seconds=600)
