"""Domain objects: operations, targets and conflicts, independent of how they are stored."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from .geo import BBox, circle_bbox
from .markings import Marking

OP_TYPES = (
    "boarding", "inspection", "patrol", "escort", "surveillance", "security-zone", "dive", "exercise",
    "investigation", "tow", "search-and-rescue", "pollution-response",
)
PRIORITIES = ("high", "medium", "low")
RESOLUTIONS = ("proceed", "joint", "delay", "cancel")


class OpStatus(str, Enum):
    PLANNED = "planned"
    ACTIVE = "active"
    DONE = "done"
    CANCELLED = "cancelled"


LIVE_STATUSES = (OpStatus.PLANNED.value, OpStatus.ACTIVE.value)


class ConflictKind(str, Enum):
    OVERLAP = "overlap"
    SAME_VESSEL = "same-vessel"
    GAP = "gap"


class ConflictStatus(str, Enum):
    OPEN = "open"
    ACKED = "acked"
    RESOLVED = "resolved"
    CLOSED = "closed"  # closed by itself when its cause disappeared


OPEN_CONFLICT_STATUSES = (ConflictStatus.OPEN.value, ConflictStatus.ACKED.value)


def op_ref(n: int) -> str:
    return f"OP-{n}"


def target_ref(n: int) -> str:
    return f"TGT-{n}"


def conflict_ref(n: int) -> str:
    return f"CF-{n}"


@dataclass
class Operation:
    id: int
    zone: str
    agency: str
    type: str
    start: datetime
    end: datetime
    lat: float | None = None
    lon: float | None = None
    radius_m: float = 500.0
    vessel_key: str | None = None
    marking: Marking = Marking.UNCLASS
    status: str = OpStatus.PLANNED.value
    revision: int = 1

    @property
    def ref(self) -> str:
        return op_ref(self.id)

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def has_place(self) -> bool:
        return self.lat is not None and self.lon is not None

    def bbox(self) -> BBox | None:
        if not self.has_place:
            return None
        return circle_bbox(self.lat, self.lon, self.radius_m)


@dataclass
class Target:
    id: int
    zone: str
    vessel_key: str
    eta: datetime | None
    priority: str = "medium"
    status: str = "open"
    marking: Marking = Marking.UNCLASS
    endorsers: frozenset[str] = field(default_factory=frozenset)
    revision: int = 1

    @property
    def ref(self) -> str:
        return target_ref(self.id)
