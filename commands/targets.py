"""`target nominate|endorse|update|assign|close|list|show`."""
from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from watchfloor.ioc.markings import Marking
from watchfloor.ioc.model import PRIORITIES, target_ref
from watchfloor.storage import targets as repo
from watchfloor.storage.tables import EndorsementRow, TargetRow
from watchfloor.templates import render

from .context import Context, dispatch
from .errors import CommandError
from .target_eta import ais_name, annotate as annotate_eta
from .ops import _only_keys, _words
from .values import parse_marking, parse_ref, parse_text, parse_time, parse_vessel_field
from .views import record_withheld, target_view

NOMINATE_KEYS = ("name", "eta", "priority", "reason", "mark")
UPDATE_KEYS = ("name", "eta", "priority", "reason", "mark")


def _priority(raw: str) -> str:
    p = raw.strip().lower()
    if p not in PRIORITIES:
        raise CommandError("priority", f"'{raw[:24]}' is not one of high, medium, low")
    return p


def _apply(ctx: Context, row: TargetRow) -> list[str]:
    """Set the given keys on the row; returns what the reply must say about how they were read."""
    p = ctx.cmd.pairs
    notes: list[str] = []
    if "name" in p:
        row.name = parse_text("name", p["name"].text) or None
    if "eta" in p:
        row.eta = parse_time("eta", p["eta"].text, ctx.tz, ctx.now, notes)
    if "priority" in p:
        row.priority = _priority(p["priority"].text)
    if "reason" in p:
        row.reason = parse_text("reason", p["reason"].text) or None
    if "mark" in p:
        row.marking = parse_marking(p["mark"].text).value
    if not ctx.visible(row.marking):
        raise CommandError("mark", f"this room or your agency is not cleared for {row.marking}")
    return notes


def _find(ctx: Context, usage: str, lock: bool = True) -> TargetRow:
    if len(ctx.cmd.words) < 2:
        raise CommandError("id", f"missing target id; usage: {usage}")
    n = parse_ref("id", ctx.cmd.words[1].text, "TGT")
    q = select(TargetRow).where(TargetRow.id == n)
    # Locked and re-read before a change, so two changes of one target apply one after the other.
    row = ctx.s.exec(q.with_for_update().execution_options(populate_existing=True) if lock else q).first()
    if row is None or row.zone_code != ctx.zone.code or not ctx.visible(row.marking):
        raise CommandError("id", f"unknown target {target_ref(n)} in {ctx.zone.code}")
    return row


def _endorse(ctx: Context, row: TargetRow) -> bool:
    """Record the sender's agency as endorsing; False if it already did."""
    try:
        with ctx.s.begin_nested():
            ctx.s.add(EndorsementRow(target_id=row.id, agency_code=ctx.sender.agency, endorsed_by=ctx.sender.id,
                                     at=ctx.now))
            ctx.s.flush()
    except IntegrityError:
        return False
    return True


def _view(ctx: Context, row: TargetRow) -> dict:
    return target_view(row, repo.endorsers(ctx.s, row.id), ctx.room.clearance, ctx.sender.clearance)


def _recheck(ctx: Context, row: TargetRow) -> None:
    ctx.changes.merge(ctx.engine.deconfliction.check_target(ctx.s, row, ctx.now, ctx.sender.id))


def _new_row(ctx: Context, vessel) -> TargetRow:
    return TargetRow(zone_code=ctx.zone.code, vessel_key=vessel.key, agency_code=ctx.sender.agency,
                     nominated_by=ctx.sender.id, created_at=ctx.now, updated_at=ctx.now,
                     marking=Marking.UNCLASS.value, name=vessel.value if vessel.kind == "name" else None)


_FIELDS = {"name": "name", "eta": "eta", "priority": "priority", "reason": "reason", "mark": "marking"}


def _not_applied(ctx: Context, existing: TargetRow, given: TargetRow) -> list[dict]:
    """The sender's values a nomination of an already targeted vessel did not apply, with what the target keeps.

    A target the sender may not read is not compared (that would tell its details): every value is listed."""
    hidden = not ctx.visible(existing.marking)
    out = []
    for key in ctx.cmd.pairs:  # in the order the sender wrote them
        mine, kept = getattr(given, _FIELDS[key]), getattr(existing, _FIELDS[key])
        if hidden or mine != kept:
            out.append({"key": key, "given": mine, "kept": None if hidden else kept})
    return out


def _update_command(ctx: Context, existing: TargetRow, not_applied: list[dict]) -> str:
    """The `target update` that would apply them, as one would type it (ETA as a zone-local date and time)."""
    words = ["target update", target_ref(existing.id)]
    for n in not_applied:
        v = n["given"]
        if n["key"] == "eta":
            v = v.astimezone(ctx.tz).strftime("%Y-%m-%dT%H:%M") if v else '""'
        elif n["key"] in ("name", "reason"):
            v = f'"{v or ""}"'
        words.append(f"{n['key']}={v}")
    return " ".join(words)


def nominate(ctx: Context) -> None:
    usage = 'target nominate VESSEL [name=".." eta=TIME priority=high|medium|low reason=".." mark=]'
    ctx.allow("nominate")
    if len(ctx.cmd.words) < 2:
        raise CommandError("vessel", f"missing; usage: {usage}")
    _words(ctx, 1, usage)
    _only_keys(ctx, NOMINATE_KEYS, "target nominate")
    word = ctx.cmd.words[1]
    vessel = parse_vessel_field(word.text, word.quoted)
    repo.lock_vessel(ctx.s, ctx.zone.code, vessel.key)
    existing = repo.open_for_vessel(ctx.s, ctx.zone.code, vessel.key)
    # One open target per vessel, also when the sender may not read it: the agency joins it and is shown
    # only that it exists (as any withheld item), never a second target beside it.
    if existing is not None:
        # The sender's values are checked as for a new target (bad input stores nothing, not even the
        # endorsement), and the reply names each one that differs from the target and so was not applied.
        scratch = _new_row(ctx, vessel)
        _apply(ctx, scratch)
        not_applied = _not_applied(ctx, existing, scratch)
        new = _endorse(ctx, existing)
        if new:
            ctx.audit("target.endorse", target_ref(existing.id), {"agency": ctx.sender.agency, "via": "nominate"})
            existing.updated_at = ctx.now
            existing.revision += 1
            ctx.s.add(existing)
            _recheck(ctx, existing)
        ctx.reply("target_joined.j2", target=_view(ctx, existing), new_endorsement=new,
                  raised=[f"CF-{c.id}" for c in ctx.changes.raised], not_applied=not_applied,
                  update_command=_update_command(ctx, existing, not_applied),
                  may_update=ctx.sender.is_supervisor or ctx.sender.agency == existing.agency_code)
        return
    row = _new_row(ctx, vessel)
    notes = _apply(ctx, row)
    if row.name is None:  # nominated by IMO or MMSI of a ship heard on AIS: it goes by its AIS name
        row.name = ais_name(ctx.s, vessel.key)
    ctx.s.add(row)
    ctx.s.flush()
    _endorse(ctx, row)
    ctx.audit("target.nominate", target_ref(row.id), {"vessel": row.vessel_key, "priority": row.priority,
                                                    "eta": row.eta, "marking": row.marking})
    _recheck(ctx, row)
    ctx.reply("target_nominated.j2", target=_view(ctx, row), raised=[f"CF-{c.id}" for c in ctx.changes.raised],
              notes=notes)


def endorse(ctx: Context) -> None:
    ctx.allow("endorse")
    row = _find(ctx, "target endorse TGT-n")
    _words(ctx, 1, "target endorse TGT-n")
    _only_keys(ctx, (), "target endorse")
    if row.status != "open":
        raise CommandError("id", f"{target_ref(row.id)} is closed")
    new = _endorse(ctx, row)
    if new:
        row.revision += 1
        row.updated_at = ctx.now
        ctx.s.add(row)
        ctx.audit("target.endorse", target_ref(row.id), {"agency": ctx.sender.agency})
        _recheck(ctx, row)
    ctx.reply("target_joined.j2", target=_view(ctx, row), new_endorsement=new,
              raised=[f"CF-{c.id}" for c in ctx.changes.raised], not_applied=[], update_command="",
              may_update=False)


def update(ctx: Context) -> None:
    usage = "target update TGT-n eta=.. priority=.. reason=.."
    row = _find(ctx, usage)
    ctx.allow("update", row.agency_code)
    _words(ctx, 1, usage)
    _only_keys(ctx, UPDATE_KEYS, "target update")
    if not ctx.cmd.pairs:
        raise CommandError("command", f"nothing to change; usage: {usage}")
    if row.status != "open":
        raise CommandError("id", f"{target_ref(row.id)} is closed")
    before = {k: str(getattr(row, k)) for k in UPDATE_KEYS if k != "mark"} | {"mark": row.marking}
    notes = _apply(ctx, row)
    after = {k: str(getattr(row, k)) for k in UPDATE_KEYS if k != "mark"} | {"mark": row.marking}
    row.revision += 1
    row.updated_at = ctx.now
    ctx.s.add(row)
    ctx.s.flush()
    ctx.audit("target.update", target_ref(row.id), {k: [before[k], after[k]] for k in before if before[k] != after[k]})
    _recheck(ctx, row)
    ctx.reply("target_show.j2", target=_view(ctx, row), verb="updated", notes=notes,
              raised=[f"CF-{c.id}" for c in ctx.changes.raised], closed=[f"CF-{c.id}" for c in ctx.changes.closed])


def assign(ctx: Context) -> None:
    usage = "target assign TGT-n AGENCY"
    ctx.allow("assign")
    row = _find(ctx, usage)
    _only_keys(ctx, (), "target assign")
    if len(ctx.cmd.words) < 3:
        raise CommandError("agency", f"missing; usage: {usage}")
    _words(ctx, 2, usage)
    agency = ctx.cmd.words[2].text.upper()
    if not ctx.engine.directory.agency_known(agency):
        raise CommandError("agency", f"unknown agency '{agency[:24]}'")
    row.assigned_agency = agency
    row.revision += 1
    row.updated_at = ctx.now
    ctx.s.add(row)
    ctx.audit("target.assign", target_ref(row.id), {"agency": agency})
    ctx.reply("target_show.j2", target=_view(ctx, row), verb=f"assigned to {agency}", raised=[], closed=[])


def close(ctx: Context) -> None:
    usage = 'target close TGT-n outcome=".."'
    row = _find(ctx, usage)
    ctx.allow("close", row.agency_code)
    _words(ctx, 1, usage)
    _only_keys(ctx, ("outcome",), "target close")
    if "outcome" not in ctx.cmd.pairs or not ctx.cmd.pairs["outcome"].text.strip():
        raise CommandError("outcome", f"required; usage: {usage}")
    if row.status != "open":
        raise CommandError("id", f"{target_ref(row.id)} is already closed")
    row.outcome = parse_text("outcome", ctx.cmd.pairs["outcome"].text)
    row.status = "closed"
    row.closed_at = ctx.now
    row.revision += 1
    row.updated_at = ctx.now
    ctx.s.add(row)
    ctx.s.flush()
    ctx.audit("target.close", target_ref(row.id), {"outcome": row.outcome})
    _recheck(ctx, row)
    ctx.reply("target_show.j2", target=_view(ctx, row), verb="closed", raised=[],
              closed=[f"CF-{c.id}" for c in ctx.changes.closed])


def list_targets(ctx: Context) -> None:
    which = ctx.cmd.words[1].text.lower() if len(ctx.cmd.words) > 1 else "open"
    if which not in ("open", "all"):
        raise CommandError("filter", f"'{which[:24]}' is not one of open, all")
    _only_keys(ctx, (), "target list")
    rows = repo.listing(ctx.s, ctx.zone.code, include_closed=which == "all")
    endorsers = repo.endorsers_of(ctx.s, {r.id for r in rows})
    items = [target_view(r, endorsers[r.id], ctx.room.clearance, ctx.sender.clearance) for r in rows]
    annotate_eta(ctx.s, zip(rows, items), ctx.now)
    record_withheld(ctx, "target list", items)
    if not ctx.room.show_withheld:
        items = [i for i in items if not i["withheld"]]
    ctx.reply("target_list.j2", targets=items, which=which)


def show(ctx: Context) -> None:
    row = _find(ctx, "target show TGT-n", lock=False)
    view = _view(ctx, row)
    annotate_eta(ctx.s, [(row, view)], ctx.now)
    # A target known by a name several AIS tracks carry is matched to none of them: say so, and how to fix it.
    notes = [render("target_ais_same_name.j2", count=view["ais_same_name"], vessel=row.vessel_key[5:]).text] \
        if view.get("ais_same_name") else []
    ctx.reply("target_show.j2", target=view, verb=None, raised=[], closed=[], notes=notes)


_ACTIONS = {"nominate": nominate, "endorse": endorse, "update": update, "assign": assign, "close": close,
            "list": list_targets, "show": show}


def target_command(ctx: Context) -> None:
    dispatch(ctx, "target", _ACTIONS)


HANDLERS = {"target": target_command}
