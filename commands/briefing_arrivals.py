"""The briefing's arrivals: targets by their best ETA (AIS, NOA or typed), and the other vessels whose notice of
arrival says they are due, with certain dangerous cargo flagged."""
from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from watchfloor.ioc.eta import Eta
from watchfloor.storage import vessels as vessels_repo
from watchfloor.storage.tables import TargetRow

from .target_eta import best_etas, tracks_of
from .views import target_view


def _keys(n) -> set[str]:
    return {k for k in (f"imo:{n.imo}" if n.imo else None, f"mmsi:{n.mmsi}" if n.mmsi else None,
                        f"name:{n.vessel_name.upper()}") if k}


def arrivals(s: Session, zone: str, open_targets: list[TargetRow], start: datetime, end: datetime
             ) -> tuple[list[TargetRow], dict[int, Eta], set[int], list[dict]]:
    """(targets arriving by their best ETA, soonest first; their ETAs; ids of those with a CDC notice;
    notices of arrival of other vessels in the window)."""
    best = best_etas(s, open_targets, start)
    arriving = sorted((t for t in open_targets if t.id in best and start <= best[t.id].at <= end),
                      key=lambda t: best[t.id].at)
    notices = vessels_repo.notices_between(s, zone, start, end)
    track_of, _ = tracks_of(s, {t.vessel_key for t in open_targets})
    target_keys: dict[int, set[str]] = {t.id: {t.vessel_key.upper() if t.vessel_key.startswith("name:")
                                               else t.vessel_key} for t in open_targets}
    for t in open_targets:  # a target named by MMSI (or name) matches a notice naming the IMO, through the track
        tr = track_of.get(t.vessel_key)
        if tr is not None:
            target_keys[t.id] |= {f"mmsi:{tr.mmsi}"} | ({f"imo:{tr.imo}"} if tr.imo else set())
    cdc: set[int] = set()
    others: list[dict] = []
    seen: set[str] = set()
    for n in notices:
        keys = _keys(n)
        matched = [tid for tid, ks in target_keys.items() if ks & keys]
        if matched:
            if n.cdc:
                cdc.update(matched)
            continue
        if keys & seen:
            continue  # a vessel notified twice: the first (soonest) notice
        seen |= keys
        others.append({"name": n.vessel_name, "imo": n.imo, "mmsi": n.mmsi, "eta": n.eta, "cdc": n.cdc,
                       "last_port": n.last_port or ""})
    return arriving, best, cdc, others


def arrival_views(arriving: list[TargetRow], best: dict[int, Eta], cdc: set[int], endorsers: dict[int, list],
                  clearance, reader, show_withheld: bool) -> list[tuple[TargetRow, dict]]:
    """Each arriving target as the room may see it, with its best ETA, the ETA's source and the CDC flag; one the
    room may not see as a stub (where the room lists them) or left out."""
    out = []
    for t in arriving:
        v = target_view(t, endorsers.get(t.id, []), clearance, reader)
        if not v["withheld"]:
            v["eta"], v["eta_source"], v["cdc"] = best[t.id].at, best[t.id].detail(), t.id in cdc
        if show_withheld or not v["withheld"]:
            out.append((t, v))
    return out
