"""AIS sentences to position and static reports, over pyais.

pyais decodes one sentence or an assembled message; what a feed needs around it is here: the time each sentence
carries, multi-sentence messages reassembled whatever the order their parts arrive in, and an outcome for every
line so bad ones can be counted and dropped.

A sentence's time comes from, in order (the contract's "Feeds as the field records them"):
  1. its NMEA 4 tag block `\\c:<unix time>...*hh\\`; a part of a tag-block group (`g:2-2-27300`) without `c:`
     takes the time its group's first part had;
  2. the Coast Guard's NAIS trailer, fields after the checksum (`...*hh,s…,d…,T…,r<station>,<unix time>`);
  3. the last Gatehouse `$PGHP,1,YYYY,MM,DD,hh,mm,ss,ms,...` line before it;
  4. a leading timestamp (`2026-12-01T10:00:00Z !AIVDM...`, `1796140800.5 !AIVDM...`);
  5. else the time it was received (the caller's `received`).
The parts of a multi-sentence message all take the time of its first part.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import reduce
from operator import xor

from pyais.exceptions import AISBaseException
from pyais.messages import MSG_CLASS, AISSentence

from .reports import (  # noqa: F401  (the decoder's output types and outcomes)
    CHECKSUM, DROPPED, EMPTY, IGNORED, MALFORMED, MAX_LINE, OK, ORPHAN, OUTCOMES, PART, SKIPPED, UNKNOWN_TYPE,
    PositionReport, Report, StaticReport,
)

POSITION_TYPES = frozenset({1, 2, 3, 18, 19, 27})
STATIC_TYPES = frozenset({5, 19, 24})
# Types carrying nothing for a track (base stations, binary messages, safety text, ...) are counted as ignored
# without being decoded: on a busy feed they are a good share of the lines.
WANTED_TYPES = POSITION_TYPES | STATIC_TYPES
_AIS_TAGS = frozenset({b"VDM", b"VDO"})  # any talker: !AIVDM, !ABVDM, !BSVDM, !SAVDM, !ANVDO, ...

_LEADING_TIME = re.compile(rb"^(\S+)[\s,;]+(?=[!\\$])")
# A message not completed within this many seconds (of its parts' own times) is dropped: its other parts were
# lost on the air.
PART_TIMEOUT_S = 60.0
_MAX_PENDING = 10_000
_MAX_GROUPS = 10_000
# 9999-12-31T23:59:59Z, the last second a datetime holds: a larger "time" is garbage, not a far future.
_LAST_UNIX = 253402300799.0


def unix_time(value: float) -> float | None:
    """A unix time as recorders write it: seconds, or milliseconds (above 1e11, which as seconds would be the
    year 5138) or microseconds (above 1e14). None for NaN, infinities and what no datetime can hold (NaN fails
    every comparison, so the range check below refuses it too)."""
    if value > 1e14:
        value /= 1e6
    elif value > 1e11:
        value /= 1e3
    return value if 0 < value <= _LAST_UNIX else None


def _number(raw: bytes) -> float | None:
    try:
        return unix_time(float(raw))
    except ValueError:
        return None


def parse_time_prefix(raw: bytes) -> float | None:
    """A leading timestamp: unix seconds (or ms, µs), or ISO 8601 (UTC unless it has an offset)."""
    text = raw.decode("ascii", "replace").strip()
    try:
        return unix_time(float(text))
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _checksum_ok(body: bytes, given: bytes) -> bool:
    """NMEA's checksum: the XOR of every byte between the start character and `*`, as two hex digits."""
    if len(given) != 2:
        return False
    try:
        return reduce(xor, body, 0) == int(given, 16)
    except ValueError:
        return False


class _Line:
    """What one line says besides its sentence: its outcome if it is already known, and the times it carries."""
    __slots__ = ("outcome", "sentence", "tag", "group", "nais", "lead", "gatehouse", "station")

    def __init__(self) -> None:
        self.outcome: str | None = None
        self.sentence = b""
        self.tag: float | None = None        # tag block c:
        self.group: tuple[int, bytes] | None = None  # tag block g: (part number, group id)
        self.nais: float | None = None       # NAIS trailer
        self.lead: float | None = None       # leading timestamp
        self.gatehouse: float | None = None  # the line is a $PGHP line giving this time
        self.station: bytes | None = None    # the receiving station (tag block s:, NAIS r…/b…/D…)

    def own_time(self) -> float | None:
        for t in (self.tag, self.nais, self.gatehouse, self.lead):
            if t is not None:
                return t
        return None


def _tag_block(body: bytes, out: _Line) -> str | None:
    """Read a tag block's text (between its backslashes) into `out`; an outcome if it is bad.

    Its own checksum (after its own `*`) is not verified, as pyais does not: generators commonly get it wrong
    (pyais's `compute_checksum` drops the first character, expecting a `!`), and the sentence's checksum still
    guards the report itself."""
    star = body.rfind(b"*")
    if star >= 0:
        body = body[:star]
    for field in body.split(b","):
        key = field[:2]
        if key == b"c:":
            out.tag = _number(field[2:])
            if out.tag is None:
                return MALFORMED  # `c:nan`, `c:abc`: a time nobody can read
        elif key == b"g:":
            part = field[2:].split(b"-")
            if len(part) != 3 or not part[0].isdigit():
                return MALFORMED
            out.group = (int(part[0]), part[2])
        elif key == b"s:":
            out.station = field[2:]
    return None


def _nais_trailer(trailer: bytes, out: _Line) -> str | None:
    """The fields after a NAIS sentence's checksum: `s…,d…,t…,T…,x…` (signal, slot, receiver clock...), the
    station `r…`/`b…`/`R…`/`B…`/`D…`, then the logger's unix time. Some logs append a second number; the
    first one is the receive time (libais reads it so, and the receiver's own `t` field agrees)."""
    for field in trailer.split(b","):
        first = field[:1]
        if not first:
            continue
        if first.isdigit():
            if out.nais is None:
                out.nais = _number(field)
                if out.nais is None:
                    return MALFORMED
        elif first in b"rRbBD" and out.station is None:
            out.station = field
    return None


def _gatehouse(sentence: bytes) -> float | None:
    """The time of a Gatehouse `$PGHP,1,YYYY,MM,DD,hh,mm,ss,ms,country,region,pss,online*hh` line."""
    fields = sentence.split(b",")
    if len(fields) < 9 or fields[1] != b"1":
        return None
    try:
        y, mo, d, h, mi, s, ms = (int(f) for f in fields[2:9])
        return datetime(y, mo, d, h, mi, s, ms * 1000, tzinfo=UTC).timestamp()
    except ValueError:
        return None


def read_line(line: bytes) -> _Line:
    """Split a recorded or received line into its sentence and the times it carries (no decoding)."""
    out = _Line()
    s = line.strip()
    if not s or s[:1] == b"#":
        out.outcome = SKIPPED
        return out
    if s[:1] not in (b"!", b"\\", b"$"):
        m = _LEADING_TIME.match(s)
        if m is None or (lead := parse_time_prefix(m.group(1))) is None:
            out.outcome = MALFORMED  # not an NMEA sentence at all, nor one behind a time
            return out
        out.lead = lead
        s = s[m.end():]
    if s[:1] == b"\\":
        end = s.find(b"\\", 1)
        if end < 0:
            out.outcome = MALFORMED
            return out
        out.outcome = _tag_block(s[1:end], out)
        if out.outcome is not None:
            return out
        s = s[end + 1:]
    star = s.rfind(b"*")
    if s[:1] not in (b"!", b"$") or star < 0:
        out.outcome = MALFORMED
        return out
    if len(s) > star + 3:  # fields after the checksum: the NAIS form
        if s[star + 3:star + 4] != b",":
            out.outcome = MALFORMED
            return out
        out.outcome = _nais_trailer(s[star + 4:], out)
        if out.outcome is not None:
            return out
        s = s[:star + 3]
    if s[:5] == b"$PGHP":
        if not _checksum_ok(s[1:star], s[star + 1:]):
            out.outcome = CHECKSUM
            return out
        out.gatehouse = _gatehouse(s[:star])
        # a type 1 line without a date is malformed; another Gatehouse message type times nothing
        out.outcome = MALFORMED if out.gatehouse is None and s[:8] == b"$PGHP,1," else IGNORED
    out.sentence = s
    return out


def own_time(line: bytes | str) -> float | None:
    """The unix time a line carries of its own (tag block, NAIS trailer, Gatehouse line, leading timestamp)."""
    if line.__class__ is str:
        line = line.encode("ascii", "replace")
    if len(line) > MAX_LINE:
        return None
    parsed = read_line(line)
    return None if parsed.outcome not in (None, IGNORED) else parsed.own_time()


def _text(value) -> str | None:
    if not value:
        return None
    s = " ".join(str(value).replace("@", " ").split())
    return s or None


def _ais_eta(month: int, day: int, hour: int, minute: int, received: datetime) -> datetime | None:
    """AIS ETAs have no year: the occurrence of that date nearest after the report (up to a month late).
    Month 0, day 0, hour 24 and minute 60 are how AIS says "not available": no ETA then."""
    if not (1 <= month <= 12 and 1 <= day <= 31 and 0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    for year in (received.year, received.year + 1):
        try:
            eta = datetime(year, month, day, tzinfo=UTC) + timedelta(hours=hour, minutes=minute)
        except ValueError:
            continue  # 30 February
        if (eta - received).days >= -31:
            return eta
    return None


# MMSI numbers as the 9-digit strings tracks are keyed by: a feed repeats the same few thousand vessels, and
# one string each (not one per sentence) is also less for the tracks to hold.
_MMSI: dict[int, str] = {}
_MAX_MMSI = 200_000


def to_report(msg, at: datetime) -> Report | None:
    """A decoded pyais message as our report, or None when it carries nothing for a track."""
    t = msg.msg_type
    mmsi = _MMSI.get(msg.mmsi)
    if mmsi is None:
        if len(_MMSI) >= _MAX_MMSI:
            _MMSI.clear()
        mmsi = _MMSI[msg.mmsi] = f"{msg.mmsi:09d}"
    if t in POSITION_TYPES:
        lat, lon, speed, course = msg.lat, msg.lon, msg.speed, msg.course
        if lat is None or lon is None or not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            return None  # 91 / 181: position not available
        if t == 27:  # long range: whole knots and degrees; 63 kn and 511° say "not available"
            sog = None if speed is None or speed >= 63 else float(speed)
            heading = None
        else:
            sog = None if speed is None or speed >= 102.3 else float(speed)
            heading = msg.heading
            heading = None if heading is None or heading >= 360 else int(heading)  # 511: not available
        cog = None if course is None or course >= 360 else float(course)
        return PositionReport(mmsi, at, float(lat), float(lon), sog, cog, heading)
    if t == 5:
        imo = f"{msg.imo:07d}" if msg.imo and 0 < msg.imo < 10_000_000 else None
        return StaticReport(mmsi, at, imo=imo, name=_text(msg.shipname), call_sign=_text(msg.callsign),
                            ship_type=int(msg.ship_type) or None, destination=_text(msg.destination),
                            eta=_ais_eta(msg.month, msg.day, msg.hour, msg.minute, at))
    if t == 24:
        if msg.partno == 0:
            return StaticReport(mmsi, at, name=_text(msg.shipname))
        return StaticReport(mmsi, at, call_sign=_text(msg.callsign), ship_type=int(msg.ship_type) or None)
    return None


def static_of_19(msg, at: datetime) -> StaticReport | None:
    """Type 19 (class B extended) carries a position and the name and type in one message."""
    if msg.msg_type != 19:
        return None
    return StaticReport(f"{msg.mmsi:09d}", at, name=_text(msg.shipname), ship_type=int(msg.ship_type) or None)


class _Pending:
    """The parts of one multi-sentence message heard so far, by part number, each with its time."""
    __slots__ = ("first_heard", "parts")

    def __init__(self, first_heard: float) -> None:
        self.first_heard = first_heard
        self.parts: dict[int, tuple[AISSentence, datetime]] = {}


class Decoder:
    """Lines in, reports out; keeps the parts of multi-sentence messages until every part has come, and the
    times that outlive their line (a Gatehouse line's, a tag-block group's first part's)."""

    def __init__(self) -> None:
        self._parts: dict[tuple, _Pending] = {}
        self._groups: dict[bytes, float] = {}  # tag-block group id -> the time its first part had
        self._gatehouse: float | None = None  # the last $PGHP line's time: the time of the sentences after it
        self._last_ts: tuple[float, datetime] | None = None  # feeds stamp many lines with the same second
        self._recorded: float | None = None
        self.orphaned = 0  # parts dropped without ever making a message (lost on the air, or duplicated)

    @property
    def recorded_at(self) -> datetime | None:
        """The last time a line carried of its own: a recording's clock, for the lines that carry none."""
        return self._time(self._recorded) if self._recorded is not None else None

    def _time(self, ts: float) -> datetime:
        last = self._last_ts
        if last is not None and last[0] == ts:
            return last[1]
        at = datetime.fromtimestamp(ts, UTC)
        self._last_ts = (ts, at)
        return at

    def feed(self, line: bytes | str, received: datetime) -> tuple[str, list[Report]]:
        """Decode one line received at `received` (used when the line carries no time of its own)."""
        if line.__class__ is str:
            line = line.encode("ascii", "replace")
        if len(line) > MAX_LINE:
            return MALFORMED, []  # an NMEA sentence is at most 82 characters; a tag block adds a few dozen
        station = None
        if line[:1] == b"!" and (sentence := line.strip()).rfind(b"*") == len(sentence) - 3:
            # The common case: a bare sentence. Its time is a Gatehouse line's before it, or when it came.
            ts, group = self._gatehouse, None
        else:
            parsed = read_line(line)
            if parsed.gatehouse is not None:
                self._gatehouse = self._recorded = parsed.gatehouse
            if parsed.outcome is not None:
                return parsed.outcome, []
            sentence, station, group = parsed.sentence, parsed.station, parsed.group
            ts = None
            if group is not None and group[0] > 1:
                ts = self._groups.get(group[1])  # the message's time is its first part's, whatever this one says
            if ts is None:
                ts = parsed.tag
            if ts is None:
                ts = parsed.nais
            if ts is None:
                ts = self._gatehouse if self._gatehouse is not None else parsed.lead
        if ts is not None:
            self._recorded = ts
            at = self._time(ts)
        else:
            at = received
        if group is not None:
            self._group_time(group, at)
        try:
            fields = sentence.split(b",")
            if fields[0][3:] not in _AIS_TAGS:
                return IGNORED, []  # another NMEA sentence ($GPGGA, ...): nothing for a track
            s = AISSentence(sentence, fields)
        except AISBaseException as e:
            return (UNKNOWN_TYPE if type(e).__name__ == "UnknownMessageException" else MALFORMED), []
        except (ValueError, IndexError, TypeError):
            return MALFORMED, []
        if not s.is_valid:
            return CHECKSUM, []
        if not s.payload:
            return EMPTY, []
        if s.frag_cnt > 1:
            # A tag-block group names the message (its later parts often carry no `s:`); else the station that
            # heard it does: two stations' copies of one message must not be mixed.
            done = self._assemble(s, at, group[1] if group is not None else station)
            if done is None:
                return PART, []
            s, at = done
        if s.ais_id not in WANTED_TYPES:
            # Not decoded; a type pyais does not know is still told apart from one we have no use for.
            return (IGNORED if s.ais_id in MSG_CLASS else UNKNOWN_TYPE), []
        try:
            msg = s.decode()
        except AISBaseException as e:
            return (UNKNOWN_TYPE if type(e).__name__ == "UnknownMessageException" else MALFORMED), []
        except (ValueError, IndexError, TypeError, KeyError):
            return MALFORMED, []
        try:
            report = to_report(msg, at)
            if msg.msg_type == 19:
                reports = [r for r in (report, static_of_19(msg, at)) if r is not None]
            elif report is None:
                return IGNORED, []
            else:
                return OK, [report]
        except (AttributeError, TypeError, ValueError):
            return MALFORMED, []  # a truncated payload decodes with fields missing
        return (OK if reports else IGNORED), reports

    def _group_time(self, group: tuple[int, bytes], at: datetime) -> None:
        """A tag-block group's first part gives its time to the later parts (which usually carry no `c:`)."""
        number, gid = group
        if number == 1:
            if len(self._groups) >= _MAX_GROUPS:
                del self._groups[next(iter(self._groups))]  # the oldest: its other parts are long gone
            self._groups[gid] = at.timestamp()

    def _assemble(self, s: AISSentence, at: datetime, source: bytes | None) -> tuple[AISSentence, datetime] | None:
        """Hold a part until its message has every part 1..n, in whatever order they come; then the message,
        with its first part's time. A part number already held means the held parts were of an earlier message
        whose other parts were lost: they are dropped, and this part starts the message anew."""
        key = (source, s.talker_id, s.seq_id, s.channel, s.frag_cnt)
        now = at.timestamp()
        pending = self._parts.get(key)
        if pending is not None and (s.frag_num in pending.parts or abs(now - pending.first_heard) > PART_TIMEOUT_S):
            self.orphaned += len(pending.parts)
            del self._parts[key]
            pending = None
        if pending is None:
            if len(self._parts) >= _MAX_PENDING:
                self._expire(now)
            pending = self._parts[key] = _Pending(now)
        pending.parts[s.frag_num] = (s, at)
        if len(pending.parts) < s.frag_cnt:
            return None
        del self._parts[key]
        parts = [pending.parts[n] for n in range(1, s.frag_cnt + 1)]
        return AISSentence.assemble_from_iterable([p for p, _ in parts]), parts[0][1]

    def _expire(self, now: float) -> None:
        for key in [k for k, p in self._parts.items() if abs(now - p.first_heard) > PART_TIMEOUT_S]:
            self.orphaned += len(self._parts.pop(key).parts)
        if len(self._parts) >= _MAX_PENDING:
            self.finish()

    def finish(self) -> int:
        """Drop the parts of every message still incomplete (the end of a recording); how many parts that was."""
        dropped = sum(len(p.parts) for p in self._parts.values())
        self._parts.clear()
        self.orphaned += dropped
        return dropped
