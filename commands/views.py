"""What templates receive: plain dicts of operations, targets and conflicts, or a withheld stub.

Whether an item may be shown is decided here, through `ioc.markings.may_show`, for every output path.
"""
from __future__ import annotations

from typing import Any

from watchfloor.ioc.markings import may_show
from watchfloor.ioc.model import conflict_ref, op_ref, target_ref
from watchfloor.ioc.overdue import is_overdue
from watchfloor.ioc.vessels import Vessel
from watchfloor.storage.tables import ConflictRow, OperationRow, TargetRow


def vessel_label(key: str | None, name: str | None = None) -> str:
    """A vessel as people read it: `IMO9074729`, `MMSI 366987654` (a bare nine-digit number says nothing), a name."""
    if not key:
        return ""
    vessel = Vessel.from_key(key)
    v = f"MMSI {vessel.value}" if vessel.kind == "mmsi" else str(vessel)
    return f"{v} ({name})" if name and str(vessel).upper() != name.upper() else v


def place(row: OperationRow) -> str:
    if row.lat is None:
        return ""
    r = row.radius_m
    radius = f"{r / 1000:g} km" if r >= 1000 else f"{r:g} m"
    return f"{row.lat:.4f},{row.lon:.4f} ±{radius}"


def withheld(ref: str, marking: str) -> dict[str, Any]:
    return {"ref": ref, "withheld": True, "marking": marking}


def op_view(row: OperationRow, clearance, reader=None, now=None) -> dict[str, Any]:
    """With `now`, the view says whether the operation is overdue then (ioc/overdue.py)."""
    if not may_show(row.marking, clearance, reader):
        return withheld(op_ref(row.id), row.marking)
    return {
        "ref": op_ref(row.id), "withheld": False, "marking": row.marking, "agency": row.agency_code,
        "type": row.type, "vessel": vessel_label(row.vessel_key), "place": place(row), "start": row.start_at,
        "end": row.end_at, "contact": row.contact or "", "note": row.note or "", "status": row.status,
        "outcome": row.outcome or "", "created_by": row.created_by,
        "overdue": now is not None and is_overdue(row.status, row.end_at, now),
    }


def target_view(row: TargetRow, endorsers: list[str], clearance, reader=None) -> dict[str, Any]:
    if not may_show(row.marking, clearance, reader):
        return withheld(target_ref(row.id), row.marking)
    return {
        "ref": target_ref(row.id), "withheld": False, "marking": row.marking, "vessel": vessel_label(row.vessel_key),
        "name": row.name or "", "eta": row.eta, "priority": row.priority, "reason": row.reason or "",
        "status": row.status, "agency": row.agency_code, "endorsers": endorsers,
        "assigned": row.assigned_agency or "", "outcome": row.outcome or "",
    }


def conflict_view(cf: ConflictRow, ops: dict[int, OperationRow], target: TargetRow | None,
                  endorsers: list[str], clearance, reader=None) -> dict[str, Any]:
    base = {
        "ref": conflict_ref(cf.id), "kind": cf.kind, "status": cf.status, "marking": cf.marking,
        "acked_by": cf.acked_by or "", "resolution": cf.resolution or "", "resolved_by": cf.resolved_by or "",
        "note": cf.note or "", "closed_reason": cf.closed_reason or "", "raised_at": cf.raised_at,
        "escalated": cf.escalated_at is not None, "snoozed_until": cf.snoozed_until,
    }
    if not may_show(cf.marking, clearance, reader):
        # The note and the closing reason are the conflict's own details (they name operations, places,
        # plans): a withheld stub keeps only what says it exists and whether someone owns it.
        return {**base, "note": "", "closed_reason": "details withheld", "withheld": True}
    sides = [op_view(ops[i], clearance, reader) for i in (cf.op_a, cf.op_b) if i is not None and i in ops]
    return {**base, "withheld": False, "ops": sides,
            "target": target_view(target, endorsers, clearance, reader) if target is not None else None}


def record_withheld(ctx, listing: str, items: list[dict[str, Any]]) -> None:
    """One audit record per listing that withheld something: who was refused what, where.

    Only listings, and only when something was withheld, so the trail does not grow with every read. The
    agency is left off the record so that reading does not count as activity in the briefing's participation.
    """
    refs = [i["ref"] for i in items if i.get("withheld")]
    if not refs:
        return
    from watchfloor.storage.audit import append

    append(ctx.s, at=ctx.now, actor=ctx.sender.id, room=ctx.room.id,
           zone=ctx.room.zone.code if ctx.room.zone else None, command=ctx.msg.text[:500], action="withhold",
           detail={"listing": listing, "count": len(refs), "refs": refs[:50], "reader_agency": ctx.sender.agency,
                   "stubs_shown": ctx.room.show_withheld})
