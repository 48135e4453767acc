"""Each vessel's track: its latest position and static data, kept in memory and updated per report."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .reports import PositionReport, Report, StaticReport


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

    def __len__(self) -> int:
        return len(self.by_mmsi)

    def get(self, mmsi: str) -> Track | None:
        return self.by_mmsi.get(mmsi)

    def load(self, track: Track) -> None:
        self.by_mmsi[track.mmsi] = track
        if track.imo:
            self.by_imo[track.imo] = track.mmsi

    def mmsi_of(self, vessel_key: str) -> str | None:
        kind, _, value = vessel_key.partition(":")
        if kind == "mmsi":
            return value
        if kind == "imo":
            return self.by_imo.get(value)
        return None

    def apply(self, r: Report) -> tuple[Track, bool]:
        t = self.by_mmsi.get(r.mmsi)
        if t is None:
            t = self.by_mmsi[r.mmsi] = Track(r.mmsi)
        if isinstance(r, PositionReport):
            # Reports arrive out of order (several receivers, replays): an older one never rolls a track back.
            if t.position_at is not None and r.at < t.position_at:
                return t, False
            t.lat, t.lon, t.sog, t.cog, t.heading, t.position_at = r.lat, r.lon, r.sog, r.cog, r.heading, r.at
            return t, True
        if isinstance(r, StaticReport):
            if t.static_at is not None and r.at < t.static_at:
                return t, False
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
