"""The three conflict rules of the contract and their fast, all-pairs-free detection.

`pair_findings` is the rule for one pair; `sweep` applies it to a whole zone with a time sweep and a spatial grid
so the work grows with the operations near each other, not with the square of the total; `naive_findings` is
the all-pairs reference the property tests and benchmarks compare against.
"""
from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .geo import circles_intersect
from .model import ConflictKind, Operation, Target
from .vessels import Vessel


@dataclass(frozen=True)
class Rules:
    same_vessel_window: timedelta = timedelta(hours=6)
    gap_horizon: timedelta = timedelta(hours=24)
    gap_min_endorsers: int = 2
    gap_priorities: tuple[str, ...] = ("high",)
    max_operation: timedelta = timedelta(days=7)
    max_radius_m: float = 200_000.0


DEFAULT_RULES = Rules()


@dataclass(frozen=True, order=True)
class Finding:
    """A conflict the rules see now. `key` identifies it so the same cause is raised once."""

    key: str
    kind: str
    op_ids: tuple[int, ...] = ()
    target_id: int | None = None


def pair_key(kind: str, a: int, b: int) -> str:
    lo, hi = sorted((a, b))
    return f"{kind}:{lo}:{hi}"


def gap_key(target_id: int) -> str:
    return f"gap:{target_id}"


def windows_overlap(a: Operation, b: Operation) -> bool:
    return a.start < b.end and b.start < a.end


def overlaps(a: Operation, b: Operation) -> bool:
    return (
        a.agency != b.agency
        and a.is_live and b.is_live
        and a.has_place and b.has_place
        and windows_overlap(a, b)
        and circles_intersect(a.lat, a.lon, a.radius_m, b.lat, b.lon, b.radius_m)
    )


def same_vessel(a: Operation, b: Operation, rules: Rules = DEFAULT_RULES) -> bool:
    if a.agency == b.agency or not (a.is_live and b.is_live):
        return False
    if not a.vessel_key or a.vessel_key != b.vessel_key or not Vessel.from_key(a.vessel_key).is_identified:
        return False
    apart = max(a.start, b.start) - min(a.end, b.end)
    return apart < rules.same_vessel_window


def pair_findings(a: Operation, b: Operation, rules: Rules = DEFAULT_RULES) -> list[Finding]:
    found = []
    lo, hi = sorted((a.id, b.id))
    if overlaps(a, b):
        found.append(Finding(pair_key(ConflictKind.OVERLAP.value, lo, hi), ConflictKind.OVERLAP.value, (lo, hi)))
    if same_vessel(a, b, rules):
        kind = ConflictKind.SAME_VESSEL.value
        found.append(Finding(pair_key(kind, lo, hi), kind, (lo, hi)))
    return found


def _important(t: Target, rules: Rules) -> bool:
    """High priority, or endorsed by several agencies."""
    return t.priority in rules.gap_priorities or len(t.endorsers) >= rules.gap_min_endorsers


def covers(op: Operation, t: Target, now: datetime) -> bool:
    """A live operation on the target's vessel that is not over: one that ended last week covers nothing."""
    return op.is_live and op.vessel_key == t.vessel_key and op.end > now


def target_needs_cover(t: Target, now: datetime, rules: Rules = DEFAULT_RULES) -> bool:
    """Open, important and arriving within the horizon."""
    if t.status != "open" or t.eta is None:
        return False
    return _important(t, rules) and now <= t.eta <= now + rules.gap_horizon


def gap_finding(t: Target, covering_ops: Iterable[Operation], now: datetime,
                rules: Rules = DEFAULT_RULES) -> Finding | None:
    if not target_needs_cover(t, now, rules):
        return None
    if any(covers(op, t, now) for op in covering_ops):
        return None
    return Finding(gap_key(t.id), ConflictKind.GAP.value, (), t.id)


def gap_still_open(t: Target, covering_ops: Iterable[Operation], now: datetime,
                   rules: Rules = DEFAULT_RULES) -> bool:
    """A raised gap stays open past the ETA (nobody covered it); it closes when covered or no longer important."""
    if t.status != "open" or t.eta is None:
        return False
    if not _important(t, rules) or t.eta > now + rules.gap_horizon:
        return False
    return not any(covers(op, t, now) for op in covering_ops)


def naive_findings(ops: Sequence[Operation], rules: Rules = DEFAULT_RULES) -> set[Finding]:
    found: set[Finding] = set()
    for i, a in enumerate(ops):
        for b in ops[i + 1:]:
            found.update(pair_findings(a, b, rules))
    return found


_CELL_DEG = 0.1  # ~11 km: a few cells for the usual circles of a few hundred metres to a few km
_MAX_CELLS = 100


def _cells(op: Operation) -> list[tuple[int, int]] | None:
    """Grid cells the operation's box touches; None when it is too large to grid (checked against all)."""
    box = op.bbox()
    lat0, lat1 = math.floor(box.min_lat / _CELL_DEG), math.floor(box.max_lat / _CELL_DEG)
    cols: list[int] = []
    for lo, hi in box.lon_ranges():
        cols.extend(range(math.floor(lo / _CELL_DEG), math.floor(hi / _CELL_DEG) + 1))
    if (lat1 - lat0 + 1) * len(cols) > _MAX_CELLS:
        return None
    return [(r, c) for r in range(lat0, lat1 + 1) for c in cols]


def sweep(ops: Iterable[Operation], rules: Rules = DEFAULT_RULES) -> set[Finding]:
    """All pair conflicts among `ops`, by a sweep over start times with a spatial grid of the live window.

    Each operation is compared only with operations still running (or, for the same vessel, ended less than the
    same-vessel window ago) when it starts, and of those only with ones sharing a grid cell or its vessel.
    """
    live = sorted((op for op in ops if op.is_live), key=lambda o: (o.start, o.id))
    found: set[Finding] = set()
    grid: dict[tuple[int, int], set[int]] = defaultdict(set)
    big: set[int] = set()
    by_vessel: dict[str, set[int]] = defaultdict(set)
    by_id: dict[int, Operation] = {}
    cells_of: dict[int, list[tuple[int, int]] | None] = {}
    place_expiry: list[tuple[datetime, int]] = []
    vessel_expiry: list[tuple[datetime, int]] = []

    for op in live:
        while place_expiry and place_expiry[0][0] <= op.start:
            _, old = heapq.heappop(place_expiry)
            cells = cells_of.pop(old)
            if cells is None:
                big.discard(old)
            else:
                for c in cells:
                    grid[c].discard(old)
        while vessel_expiry and vessel_expiry[0][0] <= op.start:
            _, old = heapq.heappop(vessel_expiry)
            by_vessel[by_id[old].vessel_key].discard(old)

        candidates: set[int] = set()
        if op.has_place:
            cells = _cells(op)
            if cells is None:
                candidates.update(i for c_ids in grid.values() for i in c_ids)
            else:
                for c in cells:
                    candidates.update(grid.get(c, ()))
            candidates.update(big)
        if op.vessel_key:
            candidates.update(by_vessel.get(op.vessel_key, ()))
        for other_id in candidates:
            found.update(pair_findings(op, by_id[other_id], rules))

        by_id[op.id] = op
        if op.has_place:
            cells_of[op.id] = cells
            if cells is None:
                big.add(op.id)
            else:
                for c in cells:
                    grid[c].add(op.id)
            heapq.heappush(place_expiry, (op.end, op.id))
        if op.vessel_key and Vessel.from_key(op.vessel_key).is_identified:
            by_vessel[op.vessel_key].add(op.id)
            heapq.heappush(vessel_expiry, (op.end + rules.same_vessel_window, op.id))
    return found
