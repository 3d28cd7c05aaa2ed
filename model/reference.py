"""`reference`: this project's design (work in progress)."""

from __future__ import annotations

from .seed import Seed


class Reference(Seed):
    name = "reference"
