"""The AIS hot path: decode, update tracks and watch approach areas in memory; write to the database in batches.

The live feed and `watchfloor import ais` both go through `AisIngest.feed` then `flush`, so a recorded feed is
processed exactly as a live one. Nothing is written per sentence: `flush` (every few seconds, or at the end of a
file) writes the changed tracks with one upsert, the new positions with one insert, and posts the approach
notices. A restart loads the stored tracks and carries on from them.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlmodel import select

from watchfloor.ioc.reports import OUTCOMES, PositionReport, StaticReport
from watchfloor.ioc.approach import ApproachArea, step
from watchfloor.ioc.eta import ais_eta
from watchfloor.ioc.markings import may_show
from watchfloor.ioc.model import target_ref
from watchfloor.ioc.tracks import Track, Tracks
from watchfloor.ioc.zones import get_zone
from watchfloor.storage import vessels as repo
from watchfloor.storage.tables import TargetRow

from .posting import post

MAX_PENDING_POSITIONS = 200_000  # past this, history is dropped until the next flush (tracks are always kept)
# The history keeps one position per vessel per 30 s: ships report every 2-10 s, and a track drawn from
# half-minute points is no different while the database writes a fraction of the rows.
HISTORY_STEP = timedelta(seconds=30)
PRUNE_EVERY = timedelta(minutes=10)  # of feed time: the history's retention is checked this often
RECHECK_EVERY = timedelta(seconds=30)  # a targeted vessel's gap is re-checked at most this often
TRACKS_EVERY = timedelta(seconds=10)  # the tracks are written at most this often (positions at every flush)


@dataclass
class Batch:
    tracks: list[dict]
    positions: list[dict]
    entries: list
    outcomes: Counter
    recheck: set = field(default_factory=set)


def approach_areas(settings) -> dict[str, ApproachArea]:
    """Every zone's approach area: the configured ones, and the 50 nm default for the others."""
    from watchfloor.ioc.zones import all_zones

    areas = {code: ApproachArea(code, z.lat, z.lon) for code, z in all_zones().items()}
    for zc in settings.zone:
        z = get_zone(zc.code)
        polygon = tuple((float(a), float(b)) for a, b in zc.approach) if zc.approach else None
        areas[z.code] = ApproachArea(z.code, z.lat, z.lon, zc.approach_nm, polygon)
    return areas


class AisIngest:
    def __init__(self, db, directory, *, on_outcome: Callable[[str, int], None] | None = None,
                 retain: timedelta | None = None):
        self.db = db
        self.directory = directory
        self._decoder = None  # loaded on first use: the live feed decodes in its own process (bot/ais/worker.py)
        self.tracks = Tracks()
        self.areas = approach_areas(directory.settings)
        self.retain = retain if retain is not None else timedelta(days=directory.settings.ais.retain_days)
        self.on_outcome = on_outcome
        self.outcomes: Counter[str] = Counter({o: 0 for o in OUTCOMES})
        self._dirty: dict[str, Track] = {}
        self._positions: list[dict] = []
        self._entries: list[tuple[Track, ApproachArea, tuple[int, str, str | None]]] = []
        # mmsi -> [(zone, target id, marking, name)] of open targets; refreshed at each flush
        self._watched: dict[str, list[tuple[str, int, str, str | None]]] = {}
        self._primed: set[tuple[str, str]] = set()
        self.latest: datetime | None = None
        self._pruned: datetime | None = None
        self._tracks_at: datetime | None = None
        self._history_at: dict[str, datetime] = {}
        self._recheck: set[tuple[str, int]] = set()  # targets whose vessel moved: their ETA may have changed
        self._rechecked: dict[int, datetime] = {}
        self._deconfliction = None

    def resume(self) -> int:
        """Load the stored tracks (their approach state included) and the open targets. A stored track replaces
        the one in memory unless that one is newer (heard here, not yet written): after another replica had the
        feed for a while, the database is the newer."""
        with self.db.session() as s:
            for t in repo.load_tracks(s):
                mine = self.tracks.get(t.mmsi)
                if mine is not None and mine.position_at is not None and (
                        t.position_at is None or mine.position_at >= t.position_at):
                    continue
                self.tracks.load(t)
                self._dirty.pop(t.mmsi, None)
            self._refresh_watched(s, prime_all=True)
        return len(self.tracks)

    @property
    def decoder(self):
        if self._decoder is None:
            from watchfloor.ioc.ais import Decoder

            self._decoder = Decoder()
        return self._decoder

    def feed(self, line: bytes | str, received: datetime) -> str:
        outcome, reports = (self._decoder or self.decoder).feed(line, received)
        self.outcomes[outcome] += 1
        self.apply(reports)
        return outcome

    def apply_decoded(self, outcomes: dict[str, int], positions: list[tuple], statics: list[tuple]) -> None:
        """What the live feed's decoding process sends back (bot/ais/worker.py): outcome counts, and reports as
        tuples, static data first so that a notice in the same batch names the ship."""
        for outcome, n in outcomes.items():
            self.outcomes[outcome] += n
        at_of: dict[float, datetime] = {}

        def at(ts: float) -> datetime:
            d = at_of.get(ts)
            if d is None:
                d = at_of[ts] = datetime.fromtimestamp(ts, UTC)
            return d

        self.apply([StaticReport(m, at(ts), imo, name, call_sign, ship_type, destination,
                                 datetime.fromtimestamp(eta, UTC) if eta is not None else None)
                    for m, ts, imo, name, call_sign, ship_type, destination, eta in statics])
        self.apply([PositionReport(m, at(ts), lat, lon, sog, cog, heading)
                    for m, ts, lat, lon, sog, cog, heading in positions])

    def apply(self, reports) -> None:
        """Reports from any source (decoded sentences, the national archive's CSV) into the tracks."""
        for r in reports:
            track, moved = self.tracks.apply(r)
            self._dirty[track.mmsi] = track
            if moved:
                self._moved(track, r)
            elif track.mmsi in self._watched and r.__class__ is StaticReport:
                # a new destination or reported ETA may change a target's best ETA (ioc/eta.py)
                self._recheck.update((zone, tid) for zone, tid, _, _ in self._watched[track.mmsi])

    def _moved(self, track: Track, r: PositionReport) -> None:
        if self.latest is None or r.at > self.latest:
            self.latest = r.at
        last = self._history_at.get(r.mmsi)
        if (last is None or r.at - last >= HISTORY_STEP) and len(self._positions) < MAX_PENDING_POSITIONS:
            self._history_at[r.mmsi] = r.at
            self._positions.append({"mmsi": r.mmsi, "at": r.at, "lat": r.lat, "lon": r.lon, "sog": r.sog,
                                    "cog": r.cog})
        watched = self._watched.get(track.mmsi)
        if not watched:
            return
        for zone, target_id, marking, name in watched:
            self._recheck.add((zone, target_id))
            area = self.areas.get(zone)
            if area is None:
                continue
            primed = (track.mmsi, zone) in self._primed
            entered = step(track.in_approach, [area], r.lat, r.lon)
            if not primed:
                # It became a target while already in (or out of) the area: that is no entry.
                self._primed.add((track.mmsi, zone))
                continue
            if entered:
                # A snapshot: the track moves on before the flush posts the notice.
                at_entry = Track(track.mmsi, name=track.name, lat=r.lat, lon=r.lon, sog=r.sog, cog=r.cog,
                                 position_at=r.at)
                self._entries.append((at_entry, area, (target_id, marking, name)))

    def flush(self, now: datetime) -> dict[str, int]:
        """Write what changed since the last flush and post the approach notices, in one transaction."""
        return self.write(self.take(now, everything=True), now)

    def take(self, now: datetime, everything: bool = False) -> Batch:
        """What changed since the last take, copied: the feed goes on changing the tracks while it is written.
        Called where `feed` is called (the event loop), so no lock is needed.

        Positions, notices and gap checks go in every batch; the tracks (latest position and static data of
        each vessel) every TRACKS_EVERY, unless `everything`: a vessel reporting every 2 s is written once,
        not five times, and a restart loses at most those seconds of tracks."""
        due = {(z, tid) for z, tid in self._recheck
               if tid not in self._rechecked or now - self._rechecked[tid] >= RECHECK_EVERY}
        for _, tid in due:
            self._rechecked[tid] = now
        self._recheck -= due
        tracks: list[dict] = []
        if everything or self._tracks_at is None or now - self._tracks_at >= TRACKS_EVERY:
            tracks = [repo.track_values(t, now) for t in self._dirty.values()]
            self._dirty, self._tracks_at = {}, now
        batch = Batch(tracks, self._positions, self._entries, self.outcomes, due)
        self._positions, self._entries = [], []
        self.outcomes = Counter({o: 0 for o in OUTCOMES})
        return batch

    def restore(self, batch: Batch) -> None:
        """Put back a batch whose write failed (the database was away): its tracks, notices and checks go in
        the next one; its positions too, as far as the pending limit allows."""
        for row in batch.tracks:
            track = self.tracks.get(row["mmsi"])
            if track is not None:
                self._dirty.setdefault(track.mmsi, track)
        self._entries[:0] = batch.entries
        self._recheck |= batch.recheck
        room = MAX_PENDING_POSITIONS - len(self._positions)
        if room > 0:
            self._positions[:0] = batch.positions[-room:]
        for outcome, count in batch.outcomes.items():
            self.outcomes[outcome] += count

    def write(self, batch: Batch, now: datetime) -> dict[str, int]:
        """Store a batch in one transaction (any thread); counts its outcomes once it is stored."""
        with self.db.session() as s:
            repo.upsert_track_rows(s, batch.tracks)
            repo.add_positions(s, batch.positions)
            if self.retain and self.latest is not None and (
                    self._pruned is None or self.latest - self._pruned >= PRUNE_EVERY):
                repo.prune_positions(s, self.latest - self.retain)
                self._pruned = self.latest
            for track, area, target in batch.entries:
                self._notice(s, track, area, target, now)
            self._refresh_watched(s)
        if batch.recheck:
            self._recheck_gaps(batch.recheck, now)
        if self.on_outcome is not None:
            for outcome, count in batch.outcomes.items():
                if count:
                    self.on_outcome(outcome, count)
        return {"tracks": len(batch.tracks), "positions": len(batch.positions), "notices": len(batch.entries)}

    def _recheck_gaps(self, due: set[tuple[str, int]], now: datetime) -> None:
        """The gap rule uses the best ETA: a ship speeding up into the window opens a gap, one turning away
        closes it. Each zone in its own transaction, taking the zone's lock first as the scheduler's scan does."""
        from watchfloor.storage import locks
        from watchfloor.storage.audit import hold_chain

        from .deconflict import Changes, Deconfliction, rules_from

        if self._deconfliction is None:
            self._deconfliction = Deconfliction(self.directory, rules_from(self.directory.settings))
        for zone in sorted({z for z, _ in due}):
            with self.db.session() as s:
                locks.hold(s, locks.deconfliction_lock(zone))
                hold_chain(s)
                changes = Changes()
                for tid in sorted(tid for z, tid in due if z == zone):
                    row = s.get(TargetRow, tid)
                    if row is not None and row.status == "open":
                        changes.merge(self._deconfliction.check_target(s, row, now, "ais"))
                if changes:
                    self._deconfliction.alert(s, zone, changes, now, cause="the AIS feed (a new ETA)")

    def _refresh_watched(self, s, prime_all: bool = False) -> None:
        watched: dict[str, list[tuple[str, int, str, str | None]]] = {}
        rows = s.exec(select(TargetRow.id, TargetRow.zone_code, TargetRow.vessel_key, TargetRow.marking,
                             TargetRow.name).where(TargetRow.status == "open")).all()
        for tid, zone, key, marking, name in rows:
            mmsi = self.tracks.mmsi_of(key)
            if mmsi is not None:
                watched.setdefault(mmsi, []).append((zone, tid, marking, name))
                if prime_all:
                    self._primed.add((mmsi, zone))
        self._watched = watched

    def _notice(self, s, track: Track, area: ApproachArea, target: tuple[int, str, str | None], now) -> None:
        target_id, marking, target_name = target
        zone = get_zone(area.zone)
        eta = ais_eta(track.lat, track.lon, track.sog, track.cog, track.position_at, zone.lat, zone.lon)
        data = {"ref": target_ref(target_id), "vessel": track.name or target_name or f"MMSI {track.mmsi}",
                "zone_code": zone.code, "distance_nm": area.distance_nm(track.lat, track.lon), "eta": eta,
                "marking": marking, "tz": zone.tz}
        for room in self.directory.zone_rooms(zone.code, "joint"):
            if room.platform != "console" and not may_show(marking, room.clearance):
                continue  # nothing above a room's clearance is posted there, not even that it exists

            def data_for(clearance, d=data):
                return {**d, "visible": may_show(marking, clearance)}

            post(s, room, "notice", "approach_notice.j2", data_for, now,
                 dedupe_key=f"approach:{zone.code}:{target_id}:{track.mmsi}:{track.position_at.isoformat()}:"
                            f"{room.id}"[:255])
