"""Each vessel's track: its latest position and static data, kept in memory and updated per report.

The time rules of a track live here: an older report never replaces a newer one (reports arrive out of order
from several receivers and replays), and a report stamped implausibly far ahead of when it was received or
processed is not believed at all (`too_far_ahead`): a receiver whose clock says 2100 would otherwise give the
vessel a position no later report could replace.
"""
from __future__ import annotations

import heapq
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .reports import PositionReport, Report, StaticReport

# How far ahead of the time it was received (live) or processed (an import) a report's own time may be: receivers'
# clocks drift by seconds, a GPS-less one by a few minutes; more than this is a wrong clock, not a report.
FUTURE_TOLERANCE = timedelta(minutes=5)

_NOT_ALNUM = re.compile(r"[^0-9A-Z]+")


def name_key(name: str | None) -> str:
    """A vessel name as names are compared: case, spaces and punctuation left out (`Ever-Given` = `EVER GIVEN`)."""
    return _NOT_ALNUM.sub("", name.upper()) if name else ""


def too_far_ahead(at: datetime, now: datetime) -> bool:
    """Whether a report stamped `at`, received or processed at `now`, claims a time that has not come yet."""
    return at - now > FUTURE_TOLERANCE


STATIC_FIELDS = ("imo", "name", "call_sign", "ship_type", "destination", "ais_eta", "static_at")
POSITION_FIELDS = ("lat", "lon", "sog", "cog", "heading", "position_at")


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
    # The zones whose approach area it is in, each with the time it entered (None: it was already inside when
    # first heard, or inside before entry times were kept; an entry at an unknown time is announced to nobody).
    in_approach: dict[str, datetime | None] = field(default_factory=dict)

    @property
    def has_position(self) -> bool:
        return self.lat is not None and self.position_at is not None

    @property
    def heard_at(self) -> datetime | None:
        """The time of its latest report, position or static."""
        p, s = self.position_at, self.static_at
        return s if p is None else p if s is None or p >= s else s

    def vessel_keys(self) -> list[str]:
        """The identities targets and operations use for this vessel (ioc.vessels.Vessel.key)."""
        keys = [f"mmsi:{self.mmsi}"]
        if self.imo:
            keys.append(f"imo:{self.imo}")
        return keys

    def approach_text(self, limit: int = 255) -> str:
        """`in_approach` as stored: `LALB@1764601200,NY` (zone, and its entry time in unix seconds when known)."""
        text = ",".join(z if at is None else f"{z}@{int(at.timestamp())}" for z, at in sorted(self.in_approach.items()))
        if len(text) > limit:  # dozens of overlapping areas: the zones matter more than their entry times
            text = ",".join(sorted(self.in_approach))[:limit].rsplit(",", 1)[0]
        return text

    def forget_future(self, now: datetime) -> bool:
        """Drop times stamped too far ahead of `now` (stored before such reports were refused), so that the next
        report replaces them; True if anything was dropped."""
        changed = False
        if self.position_at is not None and too_far_ahead(self.position_at, now):
            for f in POSITION_FIELDS:
                setattr(self, f, None)
            self.in_approach = {z: None for z in self.in_approach}
            changed = True
        if self.static_at is not None and too_far_ahead(self.static_at, now):
            self.static_at = None
            changed = True
        return changed


def parse_approach(text: str) -> dict[str, datetime | None]:
    """The stored `in_approach` (see `Track.approach_text`; plain zone codes from before entry times were kept)."""
    out: dict[str, datetime | None] = {}
    for item in text.split(","):
        zone, _, ts = item.partition("@")
        if zone:
            out[zone] = datetime.fromtimestamp(int(ts), UTC) if ts.isdigit() else None
    return out


def fill_missing(into: Track, stored: Track) -> None:
    """What the stored track knows and the one in memory (heard again after it left memory) does not yet."""
    for f in STATIC_FIELDS:
        if getattr(into, f) is None:
            setattr(into, f, getattr(stored, f))
    if into.position_at is None and stored.position_at is not None:
        for f in POSITION_FIELDS:
            setattr(into, f, getattr(stored, f))
        into.in_approach = dict(stored.in_approach)
    else:
        # Inside the same area as when it left memory: the entry is the one stored, not its first report since.
        for zone, at in into.in_approach.items():
            if at is None and stored.in_approach.get(zone) is not None:
                into.in_approach[zone] = stored.in_approach[zone]


FIRST = 2  # what `Tracks.apply` answers for a vessel's first position (true, as any move)


class Tracks:
    """Tracks by MMSI. `apply` answers whether the report moved the vessel (for the approach check): False, True,
    or FIRST for its first position."""

    def __init__(self) -> None:
        self.by_mmsi: dict[str, Track] = {}
        self.by_imo: dict[str, str] = {}  # IMO -> MMSI, from static reports
        self.by_name: dict[str, set[str]] = {}  # name_key -> MMSIs of the tracks with that name
        self.created: set[str] = set()  # MMSIs of the tracks `apply` created (the caller empties it when it wants)

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

    def merge(self, stored: Track) -> Track | None:
        """Fill the track in memory with what the stored one knows (`fill_missing`), keeping the indexes right;
        the track, or None when it is not in memory."""
        t = self.by_mmsi.get(stored.mmsi)
        if t is None:
            return None
        had_name = t.name
        fill_missing(t, stored)
        if t.imo:
            self.by_imo.setdefault(t.imo, t.mmsi)
        if t.name and had_name is None:
            self.by_name.setdefault(name_key(t.name), set()).add(t.mmsi)
        return t

    def remove(self, mmsi: str) -> None:
        t = self.by_mmsi.pop(mmsi, None)
        if t is None:
            return
        if t.imo and self.by_imo.get(t.imo) == mmsi:
            del self.by_imo[t.imo]
        if t.name:
            self._unname(t)

    def silent_since(self, before: datetime, keep: Collection[str] = ()) -> list[str]:
        """MMSIs of the tracks not heard since `before` (those in `keep` aside)."""
        return [m for m, t in self.by_mmsi.items()
                if m not in keep and (t.heard_at is None or t.heard_at < before)]

    def longest_silent(self, n: int, keep: Collection[str] = ()) -> list[str]:
        """The `n` MMSIs heard longest ago (those in `keep` aside)."""
        never = datetime.min.replace(tzinfo=UTC)
        return heapq.nsmallest(n, (m for m in self.by_mmsi if m not in keep),
                               key=lambda m: self.by_mmsi[m].heard_at or never)

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

    def apply(self, r: Report) -> tuple[Track, bool | int]:
        t = self.by_mmsi.get(r.mmsi)
        if t is None:
            t = self.by_mmsi[r.mmsi] = Track(r.mmsi)
            self.created.add(r.mmsi)
        if r.__class__ is PositionReport:
            # Reports arrive out of order (several receivers, replays): an older one never rolls a track back.
            last = t.position_at
            if last is not None and r.at < last:
                return t, False
            t.lat, t.lon, t.sog, t.cog, t.heading, t.position_at = r.lat, r.lon, r.sog, r.cog, r.heading, r.at
            return t, True if last is not None else FIRST
        if r.__class__ is StaticReport:
            if t.static_at is not None and r.at < t.static_at:
                return t, False
            if r.name is not None and r.name != t.name:
                self._unname(t)
                self.by_name.setdefault(name_key(r.name), set()).add(t.mmsi)
            if r.imo is not None and r.imo != t.imo and t.imo and self.by_imo.get(t.imo) == t.mmsi:
                del self.by_imo[t.imo]  # a corrected IMO: the old one is no longer this vessel's
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
