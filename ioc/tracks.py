"""Each vessel's track: its latest position and static data, kept in memory and updated per report."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from .reports import PositionReport, Report, StaticReport


_NOT_ALNUM = re.compile(r"[^0-9A-Z]+")


def name_key(name: str | None) -> str:
    """A vessel name as names are compared: case, spaces and punctuation left out (`Ever-Given` = `EVER GIVEN`)."""
    return _NOT_ALNUM.sub("", name.upper()) if name else ""


@dataclass(slots=True)
class Track:
    mmsi: str
    imo: str | None = None
    name: str | None = None
    call_sign: str | None = None
    ship_type: int | None = None
    destination: str | None = None
    ais_eta: datetime | None = None
    lat: float | None = None
    lon: float | None = None
    sog: float | None = None
    cog: float | None = None
    heading: int | None = None
    position_at: datetime | None = None
    static_at: datetime | None = None
    in_approach: set[str] = field(default_factory=set)  # zone codes whose approach area it is in

    @property
    def has_position(self) -> bool:
        return self.lat is not None and self.position_at is not None

    def vessel_keys(self) -> list[str]:
        """The identities targets and operations use for this vessel (ioc.vessels.Vessel.key)."""
        keys = [f"mmsi:{self.mmsi}"]
        if self.imo:
            keys.append(f"imo:{self.imo}")
        return keys


class Tracks:
    """Tracks by MMSI. `apply` answers whether the report moved the vessel (for the approach check)."""

    def __init__(self) -> None:
        self.by_mmsi: dict[str, Track] = {}
        self.by_imo: dict[str, str] = {}  # IMO -> MMSI, from static reports
        self.by_name: dict[str, set[str]] = {}  # name_key -> MMSIs of the tracks with that name

    def __len__(self) -> int:
        return len(self.by_mmsi)

    def get(self, mmsi: str) -> Track | None:
        return self.by_mmsi.get(mmsi)

    def load(self, track: Track) -> None:
        old = self.by_mmsi.get(track.mmsi)
        if old is not None and old.name != track.name:
            self._unname(old)
        self.by_mmsi[track.mmsi] = track
        if track.imo:
            self.by_imo[track.imo] = track.mmsi
        if track.name:
            self.by_name.setdefault(name_key(track.name), set()).add(track.mmsi)

    def _unname(self, t: Track) -> None:
        same = self.by_name.get(name_key(t.name))
        if same is not None:
            same.discard(t.mmsi)
            if not same:
                del self.by_name[name_key(t.name)]

    def mmsi_of(self, vessel_key: str) -> str | None:
        kind, _, value = vessel_key.partition(":")
        if kind == "mmsi":
            return value
        if kind == "imo":
            return self.by_imo.get(value)
        if kind == "name":  # a target known by name only: the track of that name, when there is exactly one
            named = self.by_name.get(name_key(value))
            return next(iter(named)) if named is not None and len(named) == 1 else None
        return None

    def apply(self, r: Report) -> tuple[Track, bool]:
        t = self.by_mmsi.get(r.mmsi)
        if t is None:
            t = self.by_mmsi[r.mmsi] = Track(r.mmsi)
        if r.__class__ is PositionReport:
            # Reports arrive out of order (several receivers, replays): an older one never rolls a track back.
            if t.position_at is not None and r.at < t.position_at:
                return t, False
            t.lat, t.lon, t.sog, t.cog, t.heading, t.position_at = r.lat, r.lon, r.sog, r.cog, r.heading, r.at
            return t, True
        if r.__class__ is StaticReport:
            if t.static_at is not None and r.at < t.static_at:
                return t, False
            if r.name is not None and r.name != t.name:
                self._unname(t)
                self.by_name.setdefault(name_key(r.name), set()).add(t.mmsi)
            for name in ("imo", "name", "call_sign", "ship_type", "destination"):
                value = getattr(r, name)
                if value is not None:
                    setattr(t, name, value)
            if r.eta is not None or r.destination is not None:
                t.ais_eta = r.eta
            t.static_at = r.at
            if t.imo:
                self.by_imo[t.imo] = t.mmsi
        return t, False
