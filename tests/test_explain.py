"""`sessionguard explain`: counterexamples as diagrams, narratives and tables.

Fast: the counterexamples come from docs/counterexamples.json (saved checker
output), replayed through the current model; only two tests run the checker,
on small bounds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sessionguard import tutorial
from sessionguard.cli import main
from sessionguard.explain import (
    Explained,
    ExplainError,
    diagram,
    from_data,
    mermaid,
    narrative,
    render_markdown,
    render_text,
)
from sessionguard.explain_html import render_html
from sessionguard.findings import FINDINGS
from sessionguard.model.narrative import narrate

DOCS = Path(__file__).resolve().parents[1] / "docs"
SCREEN = 50  # lines


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DOCS / tutorial.DATA).read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def cases(data: dict[str, Any]) -> dict[str, Explained]:
    return tutorial.explained(data)


@pytest.fixture
def saved(tmp_path: Path, data: dict[str, Any]) -> Path:
    """A check report with one counterexample: seed's handoff finding."""
    case = next(c for c in tutorial.CASES if c.key == "seed-handoff")
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(tutorial._report_for(data, case)))
    return path


# --- the docs --------------------------------------------------------------------------------


def test_docs_are_up_to_date_with_the_model() -> None:
    assert tutorial.stale() == [], "the generated docs are stale: python -m sessionguard.tutorial"


def test_saved_traces_are_the_ones_findings_md_tells(cases: dict[str, Explained]) -> None:
    """docs/findings.md is kept equal to the checker's output by test_findings; each saved
    trace must narrate exactly as its block there, so the diagrams are the checker's own."""
    text = (DOCS / "findings.md").read_text(encoding="utf-8")
    for f in FINDINGS:
        section = text.split(f"## {f.design}: {f.title}\n", 1)[1].split("\n## ", 1)[0]
        block = re.search(r"```\n(.*?)```", section, re.S)
        assert block is not None, f.title
        told = block.group(1).rstrip("\n").splitlines()
        assert narrate(cases[f"{f.design}-{f.prop}"].trace) == told, (
            f"{f.design}/{f.prop}: docs/counterexamples.json differs from docs/findings.md: "
            "python -m sessionguard.tutorial"
        )


def test_every_diagram_in_the_docs_is_generated() -> None:
    for name in ("tutorial.md", "explained.md"):
        text = (DOCS / name).read_text(encoding="utf-8")
        fresh = tutorial.render_all(json.loads((DOCS / tutorial.DATA).read_text()))[name]
        assert re.findall(r"```mermaid\n.*?```", text, re.S) == re.findall(r"```mermaid\n.*?```", fresh, re.S)


def test_tutorial_links_every_seed_finding() -> None:
    text = (DOCS / "tutorial.md").read_text(encoding="utf-8")
    explained_md = (DOCS / "explained.md").read_text(encoding="utf-8")
    anchors = {tutorial.slug(h) for h in re.findall(r"^## (.*)$", explained_md, re.M)}
    for f in FINDINGS:
        if f.design == "seed":
            assert f"[{f.title}](explained.md#" in text
    for anchor in re.findall(r"\(explained\.md#([^)]+)\)", text):
        assert anchor in anchors, anchor
    assert len(text.split()) < 3000  # a 15-minute read, diagrams included


# --- what each explanation shows ------------------------------------------------------------


def test_each_finding_fits_one_screen_and_names_property_and_condition(cases: dict[str, Explained]) -> None:
    for key, ex in cases.items():
        lines = narrative(ex)
        text = " ".join(" ".join(lines).split())
        assert len(mermaid(ex).splitlines()) <= SCREEN, key
        assert len(lines) <= SCREEN, key
        assert ex.prop.name in text and " ".join(ex.condition.split()) in text, key
        assert sum("⚠" in line for line in lines) == 1, key


def test_diagram_marks_awaits_and_the_violating_step(cases: dict[str, Explained]) -> None:
    ex = cases["seed-handoff"]
    d = diagram(ex)
    ids = [p.id for p in d.participants]
    assert ids[:2] == ["platform", "adapter"] and ids[-1] == "runner"
    assert {"Tm0", "H1"} <= set(ids)
    notes = [r for r in d.rows if r.kind == "note" and r.style == "await"]
    assert any(r.src == "H1" and "runner" in r.label for r in notes)
    bad = [r for r in d.rows if r.style == "violation"]
    assert len(bad) == 1 and bad[0].step == len(ex.trace) - 1 and "handoff" in bad[0].label
    src = mermaid(ex)
    assert src.startswith("sequenceDiagram") and "rect rgba" in src and "⚠ 6." in src


def test_liveness_highlights_the_point_of_no_return(cases: dict[str, Explained]) -> None:
    ex = cases["prefix-wedged"]
    assert ex.violating == 2  # the runner call hangs; the user's /stop comes after it
    assert ex.trace.steps[ex.violating].fault == "runner-hangs"
    assert "from here nothing settles" in " ".join(" ".join(narrative(ex)).split())


def test_markdown_text_and_html(cases: dict[str, Explained]) -> None:
    ex = cases["seed-no-orphan-guard"]
    md = render_markdown(ex)
    assert "```mermaid" in md and "| step | who | G[k0] | O[k0] | P[k0] | R[k0] |" in md
    text = render_text(ex)
    assert "condition that failed:" in text and "▶" in text
    html = render_html(ex)
    assert "<svg" in html and 'id="next"' in html and 'id="prev"' in html
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", html)
    assert "@import" not in html and "url(http" not in html


# --- the command --------------------------------------------------------------------------------


def test_cli_explains_a_saved_report(saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--from", str(saved), "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "```mermaid" in out and "handoff" in out
    target = tmp_path / "report.html"
    assert main(["explain", "--from", str(saved), "--property", "handoff", "--format", "html", "-o", str(target)]) == 0
    assert target.read_text().startswith("<!doctype html>")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_runs_the_checker(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["explain", "--design", "prefix", "--property", "no-orphan-guard", "--messages", "1", "--kinds", "text"])
    assert code == 0
    out = capsys.readouterr().out
    assert "condition that failed: G[k0] is present" in out


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_bad_input_is_one_line_and_exit_2(saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.md"
    assert "no such file" in _error(["explain", "--from", str(tmp_path / "missing.json")], capsys)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "not JSON" in _error(["explain", "--from", str(bad), "-o", str(out)], capsys)
    bad.write_text("[1, 2]")
    assert "not a file explain reads" in _error(["explain", "--from", str(bad)], capsys)
    assert "invalid choice" in _error(["explain", "--from", str(saved), "--property", "no-such"], capsys)
    assert "no counterexample for order" in _error(["explain", "--from", str(saved), "--property", "order"], capsys)
    assert "name a counterexample" in _error(["explain", "--design", "seed"], capsys)
    assert "takes the bound from its counterexample" in _error(["explain", "--from", str(saved), "--messages", "2"], capsys)
    # A trace the current model does not allow.
    data = json.loads(saved.read_text())
    data["reports"][0]["verdicts"][0]["trace"][2]["rule"] = "H:start"
    bad.write_text(json.dumps(data))
    assert "step 3" in _error(["explain", "--from", str(bad), "-o", str(out)], capsys)
    assert "does not replay" in _error(["explain", "--from", str(bad)], capsys)
    # A trace that replays but ends where the property holds.
    data = json.loads(saved.read_text())
    del data["reports"][0]["verdicts"][0]["trace"][-1]
    bad.write_text(json.dumps(data))
    assert "holds at its end" in _error(["explain", "--from", str(bad)], capsys)
    # A property that holds: nothing to explain.
    assert "there is no counterexample" in _error(
        ["explain", "--design", "reference", "--property", "one-worker", "--messages", "1"], capsys
    )
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "seed.json"]


def test_from_data_needs_a_choice_when_a_report_has_several(data: dict[str, Any]) -> None:
    with pytest.raises(ExplainError, match="choose one with --design and --property"):
        from_data(data, "docs/counterexamples.json", design="seed")


def test_check_json_feeds_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real pipeline: `check --format json` saved to a file, then `explain --from` it."""
    main(["check", "--design", "prefix", "--messages", "1", "--kinds", "text", "--format", "json"])
    report = tmp_path / "check.json"
    report.write_text(capsys.readouterr().out)
    assert "choose one" in _error(["explain", "--from", str(report)], capsys)
    assert main(["explain", "--from", str(report), "--property", "no-trapped-session"]) == 0
    out = capsys.readouterr().out
    assert "No trapped session" in out and "condition that failed:" in out
