"""Bad input to `sessionguard check` never gets a traceback or a hang: one line, exit 2."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionguard.cli import main

FLAGS = ["--design", "--messages", "--faults", "--sessions", "--kinds", "--fault-kinds",
         "--property", "--format", "--max-states", "--max-seconds", "--jobs"]
JUNK = st.one_of(
    st.sampled_from(["", "-1", "0", "99999999999", "nan", "1e9", "text,", ",,", "/stop,/dance",
                     "prefix", "all", "json", "xml", "no-orphan-guard", "\x00", "é", " 3 "]),
    st.text(max_size=12),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(FLAGS), JUNK), min_size=1, max_size=4))
def test_malformed_arguments_are_one_line_exit_two(capsys, pairs):
    argv = ["check", "--max-states", "50", "--max-seconds", "5", "--jobs", "1"]
    for flag, value in pairs:
        argv += [flag, value]
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("error: ")
        assert out == ""
    else:
        assert code in (0, 1) and err == ""


def test_no_command_prints_help_and_exits_two(capsys):
    assert main([]) == 2
    assert "check" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("sessionguard ")
