"""`vessel VESSEL` and `arrivals [24h|96h]`: what AIS and the notices of arrival say, for everyone (read-only)."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import col, select

from watchfloor.ioc.arrivals import NOA_HORIZON_HOURS, Arrival, merge
from watchfloor.ioc.eta import FRESH, NOA, REPORTED_FRESH, TYPED, Eta, ais_eta, best_eta, is_fresh, reported_eta
from watchfloor.ioc.geo import distance_m
from watchfloor.ioc.markings import may_show
from watchfloor.ioc.model import LIVE_STATUSES, target_ref
from watchfloor.storage import vessels as repo
from watchfloor.storage.tables import OperationRow, TargetRow
from watchfloor.storage.vessel_tables import ArrivalNoticeRow, VesselRow

from .context import Context
from .errors import CommandError
from .ops import _words
from .target_eta import annotate, tracks_of
from .values import parse_vessel_field
from .views import op_view, target_view, vessel_label

NM = 1852.0
WINDOWS = {"24h": 24, "96h": NOA_HORIZON_HOURS}


def track_eta(row: VesselRow, zone) -> Eta | None:
    return ais_eta(row.lat, row.lon, row.sog, row.cog, row.position_at, zone.lat, zone.lon)


def best_for(row: VesselRow | None, notice: ArrivalNoticeRow | None, typed: datetime | None, zone,
             now: datetime) -> Eta | None:
    """The ETA a reply shows: fresh AIS, else the notice of arrival's, else the typed one."""
    ais = track_eta(row, zone) if row is not None else None
    reported = reported_eta(row.ais_eta, row.destination, row.static_at, zone.code, now) if row is not None else None
    return best_eta(ais, row.position_at if row is not None else None, notice.eta if notice else None, typed, now,
                    reported)


def _keys(row: VesselRow | None, notice: ArrivalNoticeRow | None, asked: str) -> list[str]:
    keys = [asked]
    for r in (row, notice):
        if r is not None:
            if r.imo:
                keys.append(f"imo:{r.imo}")
            if r.mmsi:
                keys.append(f"mmsi:{r.mmsi}")
    return list(dict.fromkeys(keys))


def _age(now: datetime, then: datetime | None) -> str:
    if then is None:
        return ""
    minutes = int((now - then).total_seconds() // 60)
    if minutes < 1:
        return "just now"
    if minutes < 120:
        return f"{minutes} min ago"
    if minutes < 48 * 60:
        return f"{minutes // 60} h ago"
    return f"{minutes // 1440} days ago"


def vessel_command(ctx: Context) -> None:
    usage = 'vessel VESSEL (IMO9074729, 366123456 or "EVER GIVEN")'
    if not ctx.cmd.words:
        raise CommandError("vessel", f"missing; usage: {usage}")
    if len(ctx.cmd.words) > 1 or ctx.cmd.pairs:
        raise CommandError("vessel", f"one vessel only (quote a name with spaces); usage: {usage}")
    word = ctx.cmd.words[0]
    v = parse_vessel_field(word.text, word.quoted)
    zone = ctx.zone
    rows = repo.find_tracks(ctx.s, v.kind, v.value)
    row = max(rows, key=lambda r: r.position_at or datetime.min.replace(tzinfo=ctx.now.tzinfo), default=None)
    notices = repo.notices_for(ctx.s, zone.code, row.imo if row else (v.value if v.kind == "imo" else None),
                               row.mmsi if row else (v.value if v.kind == "mmsi" else None),
                               v.value if v.kind == "name" else None)
    notice = notices[0] if notices else None
    keys = _keys(row, notice, v.key)
    targets = ctx.s.exec(select(TargetRow).where(TargetRow.zone_code == zone.code,
                                                 col(TargetRow.vessel_key).in_(keys))
                         .order_by(col(TargetRow.id).desc()).limit(10)).all()
    if row is None and notice is None and not targets:
        # A look-up that finds nothing is an answer, not an error: the ship may simply not be in range yet.
        ctx.reply("vessel_show.j2", asked=vessel_label(v.key), track=None, notice=None, eta=None, targets=[], ops=[],
                  unknown=True)
        return
    ops = ctx.s.exec(select(OperationRow).where(OperationRow.zone_code == zone.code,
                                                col(OperationRow.vessel_key).in_(keys),
                                                col(OperationRow.status).in_(LIVE_STATUSES))
                     .order_by(OperationRow.start_at).limit(10)).all()
    open_target = next((t for t in targets if t.status == "open" and ctx.visible(t.marking)), None)
    eta = best_for(row, notice, open_target.eta if open_target else None, zone, ctx.now)
    t_items = [target_view(t, [], ctx.room.clearance, ctx.sender.clearance) for t in targets]
    annotate(ctx.s, [(t, i) for t, i in zip(targets, t_items) if t.status == "open"], ctx.now)
    o_items = [op_view(o, ctx.room.clearance, ctx.sender.clearance) for o in ops]
    if not ctx.room.show_withheld:
        t_items = [i for i in t_items if not i["withheld"]]
        o_items = [i for i in o_items if not i["withheld"]]
    track = None
    if row is not None:
        track = {
            "mmsi": row.mmsi, "imo": row.imo, "name": row.name, "call_sign": row.call_sign,
            "destination": row.destination, "ais_eta": row.ais_eta, "lat": row.lat, "lon": row.lon,
            "sog": row.sog, "cog": row.cog, "position_at": row.position_at, "age": _age(ctx.now, row.position_at),
            "stale": row.position_at is not None and not is_fresh(row.position_at, ctx.now),
            "distance_nm": distance_m(row.lat, row.lon, zone.lat, zone.lon) / NM if row.lat is not None else None,
        }
    ctx.reply("vessel_show.j2", asked=vessel_label(v.key), track=track, notice=notice, eta=eta, targets=t_items,
              ops=o_items, unknown=False)


def arrivals_command(ctx: Context) -> None:
    usage = "arrivals [24h|96h]"
    which = (ctx.cmd.action or "24h")
    if which not in WINDOWS:
        raise CommandError("window", f"'{which[:24]}' is not 24h or 96h; usage: {usage}")
    _words(ctx, 0, usage)  # say what is wrong: the window was right, a word after it is not
    if ctx.cmd.pairs:
        raise CommandError("window", f"arrivals takes no key=value, only 24h or 96h; usage: {usage}")
    zone = ctx.zone
    start, end = ctx.now, ctx.now + timedelta(hours=WINDOWS[which])
    found: list[Arrival] = []
    bound: list[Arrival] = []  # by the ETA the crew reported for a port of the zone: the last source
    # Best source first: merge keeps the first entry of each vessel.
    for row in repo.tracks_heard_since(ctx.s, ctx.now - FRESH, ctx.now - REPORTED_FRESH):
        eta = track_eta(row, zone) if is_fresh(row.position_at, ctx.now) else None
        if eta is not None and start - FRESH <= eta.at <= end:
            found.append(Arrival(row.name or "", _keys(row, None, f"mmsi:{row.mmsi}"), eta, imo=row.imo,
                                 mmsi=row.mmsi))
            continue
        eta = reported_eta(row.ais_eta, row.destination, row.static_at, zone.code, ctx.now)
        if eta is not None and start - FRESH <= eta.at <= end:
            bound.append(Arrival(row.name or "", _keys(row, None, f"mmsi:{row.mmsi}"), eta, imo=row.imo,
                                 mmsi=row.mmsi))
    for n in repo.notices_between(ctx.s, zone.code, start - timedelta(hours=6), end):
        found.append(Arrival(n.vessel_name, _keys(None, n, f"name:{n.vessel_name}"), Eta(n.eta, NOA), cdc=n.cdc,
                             imo=n.imo, mmsi=n.mmsi))
    targets = ctx.s.exec(select(TargetRow).where(TargetRow.zone_code == zone.code, TargetRow.status == "open")).all()
    # A target is the vessel of its AIS track (by IMO, MMSI, or the one track of its name: commands/target_eta.py).
    track_of = tracks_of(ctx.s, {t.vessel_key for t in targets})[0] if targets else {}

    def target_keys(t: TargetRow) -> list[str]:
        tr = track_of.get(t.vessel_key)
        return [t.vessel_key] + ([] if tr is None else _keys(tr, None, f"mmsi:{tr.mmsi}"))

    for t in targets:
        if t.eta is not None and start <= t.eta <= end and ctx.visible(t.marking):
            tr = track_of.get(t.vessel_key)
            kind, _, value = t.vessel_key.partition(":")
            found.append(Arrival(t.name or (tr.name if tr is not None else None) or (value if kind == "name" else ""),
                                 target_keys(t), Eta(t.eta, TYPED), target_id=t.id,
                                 imo=value if kind == "imo" else tr.imo if tr is not None else None,
                                 mmsi=value if kind == "mmsi" else tr.mmsi if tr is not None else None))
    arrivals = merge(found + bound)
    by_key = {k: t for t in targets if ctx.visible(t.marking) for k in target_keys(t)}
    keys = {k for a in arrivals for k in a.keys}
    ops = ctx.s.exec(select(OperationRow).where(OperationRow.zone_code == zone.code,
                                                col(OperationRow.vessel_key).in_(list(keys)),
                                                col(OperationRow.status).in_(LIVE_STATUSES))).all() if keys else []
    items = []
    for a in arrivals:
        target = next((by_key[k] for k in a.keys if k in by_key), None)
        cover = sorted({o.agency_code for o in ops if o.vessel_key in a.keys
                        and may_show(o.marking, ctx.room.clearance, ctx.sender.clearance)})
        if target is not None and target.assigned_agency:
            cover = sorted(set(cover) | {target.assigned_agency})
        items.append({"name": a.name, "eta": a.eta, "cdc": a.cdc, "imo": a.imo, "mmsi": a.mmsi,
                      "target": target_ref(target.id) if target else None,
                      "priority": target.priority if target else None, "cover": cover})
    ctx.reply("arrivals.j2", arrivals=items, window=which)


HANDLERS = {"vessel": vessel_command, "arrivals": arrivals_command}
