"""docs/findings.md is generated from the model and must not drift from it."""

from __future__ import annotations

from pathlib import Path

from sessionguard.findings import FINDINGS, render
from sessionguard.model import DESIGNS

DOC = Path(__file__).resolve().parents[1] / "docs" / "findings.md"


def test_every_declared_violation_has_a_told_finding():
    told = {(f.design, f.prop) for f in FINDINGS}
    for name in ("prefix", "seed"):
        for prop in DESIGNS[name].known:
            assert (name, prop) in told, f"{name}/{prop} is declared known but not told in docs/findings.md"


def test_findings_doc_is_up_to_date():
    fresh = render()
    assert "(not found at this bound" not in fresh
    assert DOC.read_text() == fresh, "docs/findings.md is stale: python -m sessionguard.findings > docs/findings.md"
