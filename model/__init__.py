"""The formal model of the session guard: designs, properties, checker."""

from .checker import CheckerConfig, Report, Verdict, check
from .design import Design
from .prefix import Prefix
from .properties import BY_NAME, PROPERTIES, Property
from .reference import Reference
from .seed import Seed
from .vocabulary import Bounds, State, Step, Trace

DESIGNS: dict[str, Design] = {d.name: d for d in (Prefix(), Seed(), Reference())}

__all__ = [
    "BY_NAME",
    "DESIGNS",
    "PROPERTIES",
    "Bounds",
    "CheckerConfig",
    "Design",
    "Property",
    "Report",
    "State",
    "Step",
    "Trace",
    "Verdict",
    "check",
]
