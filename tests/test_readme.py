"""The README's quickstart is what CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quickstart() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("## Quickstart", 1)[1].split("```", 2)[1]
    return [line for line in block.splitlines()[1:] if line.strip()]


def test_quickstart_is_two_lines_and_ci_runs_the_second_verbatim():
    lines = quickstart()
    assert len(lines) == 2
    assert "sessionguard check" in lines[0]
    assert "pytest" in lines[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert lines[1] in ci
