"""The AIS hot path: decode, update tracks and watch approach areas in memory; write to the database in batches.

The live feed and `watchfloor import ais` both go through `AisIngest.feed` (or `apply`) then `flush`, so a recorded
feed is processed exactly as a live one. Nothing is written per sentence: `flush` (every few seconds, or at the end
of a file) writes the changed tracks with one upsert, the new positions with one insert, and posts the approach
notices. A restart loads the tracks heard lately and carries on from them.

The order in which a vessel's reports come does not matter:
- an older report never replaces a newer one, and one stamped too far ahead of the time it is processed is
  dropped and counted (`future`) rather than believed (ioc/tracks.py);
- every vessel's entries into the approach areas are followed with their times, targeted or not. A target is
  linked to its vessel as soon as its identity is known (a type 5 giving the IMO links it at once; a target
  nominated meanwhile at the next flush); if the vessel is then inside an area it entered after the target was
  nominated, that entry is announced then, once (the notice's key is the entry's time). One that was inside
  before it became a target is not announced until it enters again;
- a targeted vessel's gap is re-checked when it moves, when its static data change and when it is linked.

Memory is bounded: tracks not heard for `retain` leave memory (their stored rows stay), and past `max_tracks` the
longest silent leave first, counted in `evicted`. A vessel heard again is filled in from its stored row.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple

from sqlalchemy import update
from sqlmodel import col, select

from watchfloor.ioc.approach import CELLS_PER_DEG, STRIDE, ApproachArea, AreaIndex, step
from watchfloor.ioc.eta import ais_eta
from watchfloor.ioc.markings import may_show
from watchfloor.ioc.model import target_ref
from watchfloor.ioc.reports import FUTURE, OK, OUTCOMES, PositionReport, StaticReport
from watchfloor.ioc.tracks import FIRST, FUTURE_TOLERANCE, POSITION_FIELDS, STATIC_FIELDS, Track, Tracks, \
    fill_missing, name_key, parse_approach
from watchfloor.ioc.zones import get_zone
from watchfloor.storage import vessels as repo
from watchfloor.storage.tables import TargetRow

from .posting import post

MAX_PENDING_POSITIONS = 200_000  # past this, history is dropped until the next flush (tracks are always kept)
# The history keeps one position per vessel per 30 s: ships report every 2-10 s, and a track drawn from
# half-minute points is no different while the database writes a fraction of the rows.
HISTORY_STEP = timedelta(seconds=30)
PRUNE_EVERY = timedelta(minutes=10)  # of feed time: the history's retention (and the tracks in memory) this often
RECHECK_EVERY = timedelta(seconds=30)  # a targeted vessel's gap is re-checked at most this often
TRACKS_EVERY = timedelta(seconds=10)  # an import writes the tracks at most this often of feed time
# The live feed writes the changed tracks at every flush (every `flush_seconds`, 2 s): a position must reach the
# stored track within 5 s (the contract, "At national scale"), and with 10 s between writes it took 11-13 s (p99).
# The cost is the rows: a vessel reporting every 2-10 s is written at each flush it moved in, not once in 10 s
# (`python bench/bench_ais.py --tracks`: the live path at 0.81x the throughput of the 10 s step when every
# vessel moves in every flush, the worst case; still ~20x the national feed's 3,000 sentences/s).
LIVE_TRACKS_EVERY = timedelta(0)
# Tracks kept in memory at most (a national feed hears some tens of thousands of vessels a week; a flood of
# made-up MMSIs must not take the bot's memory). Past it, the longest silent leave until 90% of it is left.
MAX_TRACKS = 250_000


class TargetRef(NamedTuple):
    """An open target as the hot path needs it."""
    zone: str
    id: int
    marking: str
    name: str | None
    since: datetime  # nominated then: an entry before this is not the target's


@dataclass
class Entry:
    """An approach notice to post: the vessel as it is now, the area, the target, and when it entered."""
    track: Track
    area: ApproachArea
    target: TargetRef
    entered_at: datetime


@dataclass
class Batch:
    tracks: list[dict]
    positions: list[dict]
    entries: list[Entry]
    outcomes: Counter
    recheck: set = field(default_factory=set)
    new: set = field(default_factory=set)        # MMSIs new in memory: filled in from their stored rows
    names: dict = field(default_factory=dict)    # target id -> the AIS name its vessel goes by
    evicted: Counter = field(default_factory=Counter)


def approach_areas(settings) -> dict[str, ApproachArea]:
    """Every zone's approach area: the configured ones, and the 50 nm default for the others."""
    from watchfloor.ioc.zones import all_zones

    areas = {code: ApproachArea(code, z.lat, z.lon) for code, z in all_zones().items()}
    for zc in settings.zone:
        z = get_zone(zc.code)
        polygon = tuple((float(a), float(b)) for a, b in zc.approach) if zc.approach else None
        areas[z.code] = ApproachArea(z.code, z.lat, z.lon, zc.approach_nm, polygon)
    return areas


@lru_cache(maxsize=64)
def _index_of(areas: tuple[ApproachArea, ...]) -> AreaIndex:
    """The cell index of these areas (built once per set of areas: every ingest of a process shares it)."""
    return AreaIndex(areas)


def target_key(vessel_key: str) -> str:
    """A target's vessel key as the hot path matches it (a name without case, spaces or punctuation)."""
    return f"name:{name_key(vessel_key[5:])}" if vessel_key.startswith("name:") else vessel_key


class AisIngest:
    def __init__(self, db, directory, *, on_outcome: Callable[[str, int], None] | None = None,
                 retain: timedelta | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 on_evicted: Callable[[str, int], None] | None = None, max_tracks: int = MAX_TRACKS,
                 tracks_every: timedelta = TRACKS_EVERY):
        self.db = db
        self.tracks_every = tracks_every
        self.directory = directory
        self.clock = clock  # the time reports are processed: one stamped too far after it is not believed
        self._decoder = None  # loaded on first use: the live feed decodes in its own process (bot/ais/worker.py)
        self.tracks = Tracks()
        self.areas = approach_areas(directory.settings)
        # The areas followed: those of the zones with an open target (an entry anywhere else is nobody's), indexed
        # by cell (see _follow).
        self._followed: frozenset[str] = frozenset()
        self._cells: dict = {}
        self.retain = retain if retain is not None else timedelta(days=directory.settings.ais.retain_days)
        self.max_tracks = max_tracks
        self.on_outcome = on_outcome
        self.on_evicted = on_evicted
        self.outcomes: Counter[str] = Counter({o: 0 for o in OUTCOMES})
        self.evicted: Counter[str] = Counter()  # tracks that left memory, by reason (retain, cap), ever
        self._evictions: Counter[str] = Counter()  # since the last take
        self._dirty: dict[str, Track] = {}
        self._positions: list[dict] = []
        self._entries: list[Entry] = []
        self._targets: dict[str, list[TargetRef]] = {}  # target_key -> open targets; reloaded at each flush
        self._watched: dict[str, tuple[TargetRef, ...]] = {}  # mmsi -> the open targets linked to that vessel
        self._loaded_targets: list[TargetRef] | None = None  # read by the last write, linked at the next take
        self._reloaded: list[Track] = []  # stored rows of vessels heard again, merged at the next take
        self._names: dict[int, str] = {}
        self.latest: datetime | None = None
        self._pruned: datetime | None = None
        self._swept: datetime | None = None
        self._tracks_at: datetime | None = None
        self._history_at: dict[str, datetime] = {}
        self._recheck: set[tuple[str, int]] = set()  # targets whose vessel moved: their ETA may have changed
        self._rechecked: dict[int, datetime] = {}
        self._believed_until = datetime.min.replace(tzinfo=UTC)  # report times up to this are not from the future
        self._deconfliction = None

    def resume(self) -> int:
        """Load the tracks heard within `retain` (their approach state included) and the open targets. A stored
        track replaces the one in memory unless that one is newer (heard here, not yet written): after another
        replica had the feed for a while, the database is the newer."""
        now = self.clock()
        with self.db.session() as s:
            for t in repo.load_tracks(s, now - self.retain):
                mine = self.tracks.get(t.mmsi)
                if mine is not None and mine.position_at is not None and (
                        t.position_at is None or mine.position_at >= t.position_at):
                    continue
                if t.forget_future(now):  # stored before such times were refused: the next report replaces them
                    self._dirty[t.mmsi] = t
                else:
                    self._dirty.pop(t.mmsi, None)
                self.tracks.load(t)
            self._link_all(self._open_targets(s))
        return len(self.tracks)

    @property
    def decoder(self):
        if self._decoder is None:
            from watchfloor.ioc.ais import Decoder

            self._decoder = Decoder()
        return self._decoder

    def feed(self, line: bytes | str, received: datetime) -> str:
        try:
            outcome, reports = (self._decoder or self.decoder).feed(line, received)
        except Exception:  # a line the decoder chokes on in a way nobody foresaw: counted, and the feed goes on
            outcome, reports = "malformed", ()
        self.outcomes[outcome] += 1
        if reports and self.apply(reports):
            return FUTURE
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

    def apply(self, reports: Iterable) -> int:
        """Reports from any source (decoded sentences, the national archive's CSV) into the tracks; the lines
        they came from were counted `ok`. Those stamped too far in the future are dropped and their lines
        counted `future` instead; returns how many lines that was."""
        future: set | None = None
        for r in reports:
            if r.at > self._believed_until:
                # The clock is read only for a report later than any believed so far (time moves forward).
                self._believed_until = self.clock() + FUTURE_TOLERANCE
                if r.at > self._believed_until:
                    if future is None:
                        future = set()
                    future.add((r.mmsi, r.at))  # one line's reports share both (a type 19: position and name)
                    continue
            if r.__class__ is PositionReport:
                track, moved = self.tracks.apply(r)
                self._dirty[track.mmsi] = track
                if moved:
                    self._moved(track, r, moved is FIRST)
            else:
                self._static(r)
        if future is None:
            return 0
        n = len(future)
        self.outcomes[FUTURE] += n
        self.outcomes[OK] -= min(n, self.outcomes[OK])
        return n

    def _static(self, r: StaticReport) -> None:
        t = self.tracks.get(r.mmsi)
        before = (t.imo, t.name) if t is not None else (None, None)
        track, _ = self.tracks.apply(r)
        self._dirty[track.mmsi] = track
        if (track.imo, track.name) != before:
            self._identified(track, before[1])
        watched = self._watched.get(track.mmsi)
        if watched:
            # a new destination or reported ETA may change a target's best ETA (ioc/eta.py)
            self._recheck.update((ref.zone, ref.id) for ref in watched)

    def _moved(self, track: Track, r: PositionReport, first: bool) -> None:
        at = r.at
        if self.latest is None or at > self.latest:
            self.latest = at
        last = self._history_at.get(r.mmsi)
        if (last is None or at - last >= HISTORY_STEP) and len(self._positions) < MAX_PENDING_POSITIONS:
            self._history_at[r.mmsi] = at
            self._positions.append({"mmsi": r.mmsi, "at": at, "lat": r.lat, "lon": r.lon, "sog": r.sog,
                                    "cog": r.cog})
        entered = self._approach(track, r.lat, r.lon, None if first else at) \
            if self._cells or track.in_approach else ()
        watched = self._watched.get(track.mmsi)
        if not watched:
            return
        for ref in watched:
            self._recheck.add((ref.zone, ref.id))
        for area in entered:
            entered_at = track.in_approach[area.zone]
            if entered_at is not None:
                for ref in watched:
                    if ref.zone == area.zone:
                        self._entry(track, area, ref, entered_at)

    def _approach(self, track: Track, lat: float, lon: float, at: datetime | None) -> Sequence[ApproachArea]:
        """The followed areas it has just entered (at `at`; None: its first position, the time is not known).
        AreaIndex.inside written out, the commonest cases first: this runs for every position of every vessel in
        a zone with a target, and most ships are out at sea or sitting in one port's area."""
        near = self._cells.get(int((lat + 90.0) * CELLS_PER_DEG) * STRIDE + int((lon + 180.0) * CELLS_PER_DEG))
        was_in = track.in_approach
        if near is None:
            if was_in:
                step(was_in, (), None)  # it left
            return ()
        whole, part = near
        if not part:
            inside = whole
        elif len(part) == 1:
            inside = (*whole, part[0]) if part[0].contains(lat, lon) else whole
        else:
            inside = (*whole, *(a for a in part if a.contains(lat, lon)))
        if not (inside or was_in) or (len(inside) == 1 and len(was_in) == 1 and inside[0].zone in was_in):
            return ()
        return step(was_in, inside, at)

    def _entry(self, track: Track, area: ApproachArea, ref: TargetRef, entered_at: datetime) -> None:
        # A snapshot: the track moves on before the flush posts the notice.
        now = Track(track.mmsi, name=track.name, lat=track.lat, lon=track.lon, sog=track.sog, cog=track.cog,
                    position_at=track.position_at)
        self._entries.append(Entry(now, area, ref, entered_at))

    # --- which open target is which vessel ----------------------------------------------------------------------

    def _keys(self, track: Track) -> list[str]:
        keys = [f"mmsi:{track.mmsi}"]
        if track.imo:
            keys.append(f"imo:{track.imo}")
        if track.name:
            key = name_key(track.name)
            if len(self.tracks.by_name.get(key, ())) == 1:  # a name several tracks carry is nobody's
                keys.append(f"name:{key}")
        return keys

    def _targets_of(self, track: Track) -> tuple[TargetRef, ...]:
        refs = [ref for k in self._keys(track) for ref in self._targets.get(k, ())]
        return tuple(dict.fromkeys(refs)) if len(refs) > 1 else tuple(refs)

    def _identified(self, track: Track, old_name: str | None) -> None:
        """Its IMO or name became known or changed: link its targets now (and, for a name, those of the other
        tracks that share its old or new name: a name two tracks carry is neither's)."""
        affected = {track.mmsi}
        if self._targets and any(k.startswith("name:") for k in self._targets):
            for name in (old_name, track.name):
                affected |= self.tracks.by_name.get(name_key(name), set()) if name else set()
        for mmsi in affected:
            t = self.tracks.get(mmsi)
            if t is not None:
                self._relink(t, self._targets_of(t))

    def _relink(self, track: Track, refs: tuple[TargetRef, ...]) -> None:
        old = self._watched.get(track.mmsi, ())
        if refs:
            self._watched[track.mmsi] = refs
        else:
            self._watched.pop(track.mmsi, None)
        for ref in refs:
            if ref not in old:
                self._linked(track, ref)
        self._name(track, refs)

    def _name(self, track: Track, refs: Iterable[TargetRef]) -> None:
        """A target without a name of its own goes by its vessel's AIS name (written with the next flush)."""
        if track.name:
            for ref in refs:
                if ref.name is None:
                    self._names[ref.id] = track.name

    def _linked(self, track: Track, ref: TargetRef) -> None:
        """A target newly known to be this vessel: its ETA may have changed, and an entry into its zone's area
        since it was nominated that nobody was told of is told now."""
        self._recheck.add((ref.zone, ref.id))
        entered_at = track.in_approach.get(ref.zone)
        area = self.areas.get(ref.zone)
        if entered_at is not None and entered_at >= ref.since and area is not None and track.has_position:
            self._entry(track, area, ref, entered_at)

    def _link_all(self, refs: list[TargetRef]) -> None:
        """The open targets as just read from the database: link each to its vessel (new links as `_linked`)."""
        targets: dict[str, list[TargetRef]] = {}
        for ref, key in refs:
            targets.setdefault(key, []).append(ref)
        self._targets = targets
        zones = frozenset(ref.zone for ref, _ in refs if ref.zone in self.areas)
        if zones != self._followed:
            self._follow(zones)
        watched: dict[str, list[TargetRef]] = {}
        for key, refs_of in targets.items():
            mmsi = self.tracks.mmsi_of(key) if not key.startswith("name:") else self._named(key[5:])
            if mmsi is not None:
                watched.setdefault(mmsi, []).extend(refs_of)
        old, self._watched = self._watched, {}
        for mmsi, refs_of in watched.items():
            refs_of = tuple(dict.fromkeys(refs_of))
            track = self.tracks.get(mmsi)
            if track is None:
                self._watched[mmsi] = refs_of  # nominated by MMSI, not heard yet
                continue
            self._watched[mmsi] = refs_of
            for ref in refs_of:
                if ref not in old.get(mmsi, ()):
                    self._linked(track, ref)
            self._name(track, refs_of)

    def _follow(self, zones: frozenset[str]) -> None:
        """Follow the approach areas of these zones (those with an open target) from now on. A vessel already
        inside an area newly followed is inside since a time nobody knows (so that entry is announced to no one);
        an area no longer followed is forgotten."""
        added, dropped = zones - self._followed, self._followed - zones
        new = AreaIndex(self.areas[z] for z in sorted(added)) if added else None
        for track in self.tracks.by_mmsi.values():
            inside = track.in_approach
            for zone in dropped & inside.keys():
                del inside[zone]
            if new is not None:
                now_in = {a.zone for a in new.inside(track.lat, track.lon)} if track.has_position else ()
                for zone in added:
                    if zone in now_in:
                        inside.setdefault(zone, None)  # (a stored entry time, when it has one, stays)
                    else:
                        inside.pop(zone, None)
        self._followed = zones
        self._cells = _index_of(tuple(self.areas[z] for z in sorted(zones))).cells

    def _named(self, key: str) -> str | None:
        named = self.tracks.by_name.get(key)
        return next(iter(named)) if named is not None and len(named) == 1 else None

    def _open_targets(self, s) -> list[tuple[TargetRef, str]]:
        rows = s.exec(select(TargetRow.id, TargetRow.zone_code, TargetRow.vessel_key, TargetRow.marking,
                             TargetRow.name, TargetRow.created_at).where(TargetRow.status == "open")).all()
        return [(TargetRef(zone, tid, marking, name, created if created.tzinfo else created.replace(tzinfo=UTC)),
                 target_key(key)) for tid, zone, key, marking, name, created in rows]

    # --- memory --------------------------------------------------------------------------------------------------

    def _evict(self, mmsis: list[str], reason: str) -> None:
        for m in mmsis:
            self.tracks.remove(m)
            self._history_at.pop(m, None)
            self.tracks.created.discard(m)
        if mmsis:
            self.evicted[reason] += len(mmsis)
            self._evictions[reason] += len(mmsis)

    def _bound_memory(self, now: datetime) -> None:
        keep = self._watched  # a targeted vessel stays however long it is silent
        if self.latest is not None and (self._swept is None or self.latest - self._swept >= PRUNE_EVERY):
            self._swept = self.latest
            self._evict(self.tracks.silent_since(self.latest - self.retain, keep), "retain")
        if len(self.tracks) > self.max_tracks:
            self._evict(self.tracks.longest_silent(len(self.tracks) - self.max_tracks * 9 // 10, keep), "cap")
        self._rechecked = {tid: at for tid, at in self._rechecked.items() if now - at < RECHECK_EVERY}

    # --- writing -------------------------------------------------------------------------------------------------

    def flush(self, now: datetime) -> dict[str, int]:
        """Write what changed since the last flush and post the approach notices, in one transaction."""
        return self.write(self.take(now, everything=True), now)

    def take(self, now: datetime, everything: bool = False) -> Batch:
        """What changed since the last take, copied: the feed goes on changing the tracks while it is written.
        Called where `feed` is called (the event loop), so no lock is needed; what the last `write` read (open
        targets, stored rows of vessels heard again) is applied here, in the same thread.

        Positions, notices and gap checks go in every batch; the tracks (latest position and static data of
        each vessel) every `tracks_every` (an import: TRACKS_EVERY of feed time; the live feed: every flush), unless
        `everything` (which also re-checks every gap waiting its turn): an import's vessel reporting every 2 s is
        written once, not five times, and a restart loses at most those seconds of tracks."""
        for stored in self._reloaded:
            track = self.tracks.merge(stored)
            if track is not None:
                self._identified(track, None)
        self._reloaded = []
        if self._loaded_targets is not None:
            self._link_all(self._loaded_targets)
            self._loaded_targets = None
        due = {(z, tid) for z, tid in self._recheck
               if everything or tid not in self._rechecked or now - self._rechecked[tid] >= RECHECK_EVERY}
        for _, tid in due:
            self._rechecked[tid] = now
        self._recheck -= due
        tracks: list[dict] = []
        if everything or self._tracks_at is None or now - self._tracks_at >= self.tracks_every:
            tracks = [repo.track_values(t, now) for t in self._dirty.values()]
            self._dirty, self._tracks_at = {}, now
        self._bound_memory(now)
        batch = Batch(tracks, self._positions, self._entries, self.outcomes, due, self.tracks.created, self._names,
                      self._evictions)
        self._positions, self._entries, self._names = [], [], {}
        self.tracks.created = set()
        self.outcomes = Counter({o: 0 for o in OUTCOMES})
        self._evictions = Counter()
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
        self.tracks.created |= {m for m in batch.new if m in self.tracks.by_mmsi}
        self._names = {**batch.names, **self._names}
        room = MAX_PENDING_POSITIONS - len(self._positions)
        if room > 0:
            self._positions[:0] = batch.positions[-room:]
        for outcome, count in batch.outcomes.items():
            self.outcomes[outcome] += count
        self._evictions.update(batch.evicted)

    def write(self, batch: Batch, now: datetime) -> dict[str, int]:
        """Store a batch in one transaction (any thread); counts its outcomes once it is stored."""
        posted = 0
        with self.db.session() as s:
            if batch.new:
                stored = repo.tracks_of_mmsis(s, batch.new)
                _fill_rows(batch.tracks, {t.mmsi: t for t in stored})
            repo.upsert_track_rows(s, batch.tracks)
            repo.add_positions(s, batch.positions)
            if self.retain and self.latest is not None and (
                    self._pruned is None or self.latest - self._pruned >= PRUNE_EVERY):
                repo.prune_positions(s, self.latest - self.retain)
                self._pruned = self.latest
            for tid, name in batch.names.items():  # a target with no name of its own takes its vessel's AIS name
                s.execute(update(TargetRow).where(col(TargetRow.id) == tid, col(TargetRow.name).is_(None))
                          .values(name=name[:200]))
            for entry in batch.entries:
                posted += self._notice(s, entry, now)
            targets = self._open_targets(s)
        # Applied by the next take, in the feed's own thread (see take).
        self._loaded_targets = targets
        if batch.new:
            self._reloaded = stored
        if batch.recheck:
            self._recheck_gaps(batch.recheck, now)
        if self.on_outcome is not None:
            for outcome, count in batch.outcomes.items():
                if count:
                    self.on_outcome(outcome, count)
        if self.on_evicted is not None:
            for reason, count in batch.evicted.items():
                self.on_evicted(reason, count)
        return {"tracks": len(batch.tracks), "positions": len(batch.positions), "notices": posted}

    def _recheck_gaps(self, due: set[tuple[str, int]], now: datetime) -> None:
        """The gap rule uses the best ETA: a ship speeding up into the window opens a gap, one turning away
        closes it (commands/gap_recheck.py)."""
        from .deconflict import Deconfliction, rules_from
        from .gap_recheck import recheck_gaps

        if self._deconfliction is None:
            self._deconfliction = Deconfliction(self.directory, rules_from(self.directory.settings))
        recheck_gaps(self.db, self.directory, due, now, "the AIS feed (a new ETA)", self._deconfliction)

    def _notice(self, s, entry: Entry, now) -> int:
        """Post one approach notice in the zone's joint rooms (1 if any room got it, 0 if it had been posted)."""
        track, area, ref = entry.track, entry.area, entry.target
        zone = get_zone(area.zone)
        eta = ais_eta(track.lat, track.lon, track.sog, track.cog, track.position_at, zone.lat, zone.lon)
        data = {"ref": target_ref(ref.id), "vessel": track.name or ref.name or f"MMSI {track.mmsi}",
                "zone_code": zone.code, "distance_nm": area.distance_nm(track.lat, track.lon), "eta": eta,
                "marking": ref.marking, "tz": zone.tz}
        posted = 0
        for room in self.directory.zone_rooms(zone.code, "joint"):
            if room.platform != "console" and not may_show(ref.marking, room.clearance):
                continue  # nothing above a room's clearance is posted there, not even that it exists

            def data_for(clearance, d=data):
                return {**d, "visible": may_show(ref.marking, clearance)}

            # Keyed by the entry (its time to the second, as stored), not the report: an entry is told once, however
            # it was learnt, and after a restart too.
            if post(s, room, "notice", "approach_notice.j2", data_for, now,
                    dedupe_key=f"approach:{zone.code}:{ref.id}:{track.mmsi}:"
                               f"{entry.entered_at.replace(microsecond=0).isoformat()}:{room.id}"[:255]) is not None:
                posted = 1
        return posted


def _fill_rows(rows: list[dict], stored: dict[str, Track]) -> None:
    """Rows about to be written for vessels new in memory: what their stored rows know and they do not (a vessel
    that left memory comes back with its position, not yet its name)."""
    for i, row in enumerate(rows):
        old = stored.get(row["mmsi"])
        if old is not None:
            t = Track(row["mmsi"], **{f: row[f] for f in STATIC_FIELDS + POSITION_FIELDS},
                      in_approach=parse_approach(row["in_approach"]))
            fill_missing(t, old)
            rows[i] = repo.track_values(t, row["updated_at"])
