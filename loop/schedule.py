"""A schedule: the list of choices one controlled run made, with its labels.

Why the Python version is part of a schedule: the number and the order of
the callbacks asyncio puts on the ready queue differ between minor versions
(``wait_for`` is rebuilt on ``asyncio.timeout`` in 3.12, eager tasks exist
from 3.12, ...), so step 17 of a 3.11 run is not step 17 of a 3.12 run. A
schedule is only replayable on the version that recorded it, and saying so
up front beats a confusing divergence twenty steps in.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import ScheduleVersionError

__all__ = ["FORMAT", "Schedule", "python_version"]

FORMAT = "sessionguard.schedule/1"


def python_version() -> str:
    """The running interpreter's ``"major.minor"``, as stored in schedules."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


@dataclass(frozen=True)
class Schedule:
    """The choices of one run, step by step, and the lane each one picked.

    ``steps[i] == (choice, label)``: at step ``i`` the loop offered the ready
    lanes in its deterministic order and ran lane number ``choice``, whose
    label was ``label``. Choice 0 at every step is stock asyncio's FIFO order.

    ``max_steps`` and ``max_virtual_time`` are the limits the run was recorded
    under: a run that ended by hitting one (verdict ``hung``) replays only
    under the same limit, so :func:`~sessionguard.loop.replay` reuses them.
    """

    steps: tuple[tuple[int, str], ...]
    python: str = field(default_factory=python_version)
    max_steps: int | None = None
    max_virtual_time: float | None = None

    @classmethod
    def from_steps(
        cls,
        steps: Iterable[tuple[int, str]],
        python: str | None = None,
        *,
        max_steps: int | None = None,
        max_virtual_time: float | None = None,
    ) -> Schedule:
        return cls(
            tuple((int(c), str(lbl)) for c, lbl in steps),
            python or python_version(),
            max_steps,
            max_virtual_time,
        )

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def choices(self) -> tuple[int, ...]:
        return tuple(c for c, _ in self.steps)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(lbl for _, lbl in self.steps)

    @property
    def deviations(self) -> int:
        """How many steps did not take the FIFO choice (a measure of a story's length)."""
        return sum(1 for c, _ in self.steps if c != 0)

    def check_version(self) -> None:
        """Refuse, with the reason, to replay on a different Python minor version."""
        here = python_version()
        if self.python != here:
            raise ScheduleVersionError(
                f"this schedule was recorded on Python {self.python} and cannot be replayed on "
                f"Python {here}: asyncio queues a different number of callbacks, in a different "
                f"order, on different minor versions, so the step numbers would not line up. "
                f"Replay it with Python {self.python}, or search again on {here} to get a "
                f"schedule for this version."
            )

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "python": self.python,
                "max_steps": self.max_steps,
                "max_virtual_time": self.max_virtual_time,
                "steps": [list(s) for s in self.steps],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Schedule:
        data: Any = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a schedule: expected a JSON object with format {FORMAT!r}")
        steps = data.get("steps")
        python = data.get("python")
        if not isinstance(steps, list) or not isinstance(python, str):
            raise ValueError("not a schedule: 'steps' must be a list and 'python' a string")
        max_steps = data.get("max_steps")
        max_vt = data.get("max_virtual_time")
        return cls.from_steps(
            ((s[0], s[1]) for s in steps),
            python,
            max_steps=None if max_steps is None else int(max_steps),
            max_virtual_time=None if max_vt is None else float(max_vt),
        )

    def __str__(self) -> str:
        picked = ", ".join(f"[{c}]{lbl}" if c else lbl for c, lbl in self.steps)
        return f"Schedule(python={self.python}, {len(self.steps)} steps: {picked})"
