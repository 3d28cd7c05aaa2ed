"""CrossHair proves the contracts of the synchronous cores, and refutes a broken one.

The settings matter: with CrossHair's defaults a real bug was reported as
"Not confirmed" (exit 0).  `--max_uninteresting_iterations` and a
per-condition timeout give it the room to confirm every condition here over
all paths (the domains are small), and to find the counterexample to the
broken copy within a second.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# The crosshair of the interpreter running the tests (it imports this checkout), else the one on PATH.
_OWN = Path(sys.executable).parent / "crosshair"
CROSSHAIR = str(_OWN) if _OWN.exists() else (shutil.which("crosshair") or str(_OWN))
SETTINGS = ["--analysis_kind=PEP316", "--per_condition_timeout=8", "--max_uninteresting_iterations=50"]

pytestmark = pytest.mark.skipif(not Path(CROSSHAIR).exists(), reason="crosshair-tool is not installed")


def _crosshair(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CROSSHAIR, "check", *SETTINGS, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def test_contracts_hold() -> None:
    out = _crosshair("--report_all", "sessionguard.reference.contracts")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "error" not in out.stdout
    confirmed = out.stdout.count("Confirmed over all paths")
    assert confirmed >= 20, out.stdout


BROKEN = '''
from sessionguard.reference.contracts import Guard, implies


def release(current: Guard | None, guard: Guard | None) -> Guard | None:
    """release(k, guard=g), broken: it deletes G[k] without checking identity.

    post: __return__ is None or __return__ is current
    post: implies(guard is not None and guard is not current, __return__ is current)
    """
    return None
'''


def test_broken_contract_is_refuted(tmp_path: Path) -> None:
    (tmp_path / "broken_release.py").write_text(BROKEN)
    out = _crosshair("broken_release.py", cwd=tmp_path)
    assert out.returncode != 0, out.stdout + out.stderr
    assert "false when calling release(" in out.stdout
