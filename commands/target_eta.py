"""The best ETA of targets (fresh AIS, else notice of arrival, else typed), for replies that show a target."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlmodel import Session

from watchfloor.ioc.eta import Eta, ais_eta, best_eta, reported_eta
from watchfloor.ioc.tracks import name_key
from watchfloor.ioc.zones import get_zone
from watchfloor.storage import vessels as repo
from watchfloor.storage.tables import TargetRow


def tracks_of(s: Session, vessel_keys: set[str]) -> tuple[dict[str, object], dict[str, int]]:
    """(vessel key -> its AIS track, name key -> how many tracks have that name when more than one).

    A target known only by name is matched to the track of that name (case, spaces and punctuation aside) when
    there is exactly one; with several it is not matched (their positions and ETAs would be a guess)."""
    track_of: dict[str, object] = {}
    for t in repo.tracks_for_keys(s, vessel_keys):
        track_of[f"mmsi:{t.mmsi}"] = t
        if t.imo:
            track_of.setdefault(f"imo:{t.imo}", t)
    ambiguous: dict[str, int] = {}
    names = {k for k in vessel_keys if k.startswith("name:")}
    if names:
        named = repo.tracks_named(s, {name_key(k[5:]) for k in names})
        for k in names:
            found = named.get(name_key(k[5:]), [])
            if len(found) == 1:
                track_of[k] = found[0]
            elif found:
                ambiguous[k] = len(found)
    return track_of, ambiguous


def ais_name(s: Session, vessel_key: str) -> str | None:
    """The name a vessel known by IMO or MMSI goes by on AIS (its latest heard track's), if any."""
    if not vessel_key.startswith(("imo:", "mmsi:")):
        return None
    never = datetime.min.replace(tzinfo=UTC)
    named = [t for t in repo.tracks_for_keys(s, {vessel_key}) if t.name]
    return max(named, key=lambda t: t.position_at or t.static_at or never).name if named else None


def best_etas(s: Session, rows: Iterable[TargetRow], now: datetime) -> dict[int, Eta]:
    """Target id -> its best ETA (targets with none are left out). A few queries for any number of targets."""
    rows = list(rows)
    if not rows:
        return {}
    track_of, _ = tracks_of(s, {r.vessel_key for r in rows})
    keys = {r.vessel_key for r in rows} | set(track_of) | {f"mmsi:{t.mmsi}" for t in track_of.values()} \
        | {f"imo:{t.imo}" for t in track_of.values() if t.imo}
    notice_of: dict[str, object] = {}
    for n in repo.notices_of_keys(s, {r.zone_code for r in rows}, keys):  # latest first
        for k in (f"imo:{n.imo}" if n.imo else None, f"mmsi:{n.mmsi}" if n.mmsi else None,
                  f"name:{n.vessel_name.upper()}"):
            if k is not None:
                notice_of.setdefault((n.zone_code, k), n)
    out: dict[int, Eta] = {}
    for row in rows:
        zone = get_zone(row.zone_code)
        track = track_of.get(row.vessel_key)
        vessel_keys = [row.vessel_key.upper() if row.vessel_key.startswith("name:") else row.vessel_key]
        if track is not None:
            vessel_keys += [f"mmsi:{track.mmsi}"] + ([f"imo:{track.imo}"] if track.imo else [])
        notice = next((notice_of[(row.zone_code, k)] for k in vessel_keys if (row.zone_code, k) in notice_of), None)
        ais = ais_eta(track.lat, track.lon, track.sog, track.cog, track.position_at, zone.lat, zone.lon) \
            if track is not None else None
        reported = reported_eta(track.ais_eta, track.destination, track.static_at, row.zone_code, now) \
            if track is not None else None
        eta = best_eta(ais, getattr(track, "position_at", None), notice.eta if notice else None, row.eta, now,
                       reported)
        if eta is not None:
            out[row.id] = eta
    return out


def with_eta(view: dict | None, eta: Eta | None) -> None:
    """Put a best ETA and its source into one target view (none, or a withheld one, is left alone)."""
    if view is not None and not view.get("withheld") and eta is not None:
        view["eta"], view["eta_source"] = eta.at, eta.detail()


def with_best_etas(s: Session, shown: Iterable[tuple[TargetRow | None, dict]], now: datetime) -> None:
    """(target, conflict view) pairs: a shown target's ETA becomes the one the gap rule uses, with its source, as
    alerts say it."""
    shown = [(t, v) for t, v in shown if t is not None and v.get("target")]
    etas = best_etas(s, [t for t, _ in shown], now)
    for t, v in shown:
        with_eta(v["target"], etas.get(t.id))


def annotate(s: Session, pairs: Iterable[tuple[TargetRow, dict]], now: datetime) -> None:
    """Put the best ETA and its source into target views (withheld ones are left alone), and for a target known
    by a name several AIS tracks carry, how many (`ais_same_name`): it is matched to none of them."""
    pairs = [(row, view) for row, view in pairs if not view.get("withheld")]
    etas = best_etas(s, [row for row, _ in pairs], now)
    names = {row.vessel_key for row, _ in pairs if row.vessel_key.startswith("name:")}
    _, ambiguous = tracks_of(s, names) if names else ({}, {})
    for row, view in pairs:
        with_eta(view, etas.get(row.id))
        if row.vessel_key in ambiguous:
            view["ais_same_name"] = ambiguous[row.vessel_key]


def best_eta_at(s: Session, row: TargetRow, now: datetime) -> datetime | None:
    """The time the gap rule uses for a target: its best ETA, whatever the source."""
    eta = best_etas(s, [row], now).get(row.id)
    return eta.at if eta is not None else row.eta
