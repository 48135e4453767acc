"""AIS sentences to position and static reports, over pyais.

pyais decodes one sentence or an assembled message; what a feed needs around it is here: the time each sentence
was received (tag block `c:`, a leading timestamp, or the arrival time), multi-sentence messages reassembled per
channel and sequence id, and an outcome for every line so bad ones can be counted and dropped.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime

from pyais.exceptions import AISBaseException
from pyais.messages import MSG_CLASS, AISSentence, NMEASentenceFactory

from .reports import (  # noqa: F401  (the decoder's output types and outcomes)
    CHECKSUM, DROPPED, IGNORED, MALFORMED, OK, ORPHAN, OUTCOMES, PART, UNKNOWN_TYPE, PositionReport, Report,
    StaticReport,
)

POSITION_TYPES = frozenset({1, 2, 3, 18, 19})
STATIC_TYPES = frozenset({5, 19, 24})
# Types carrying nothing for a track (base stations, binary messages, safety text, ...) are counted as ignored
# without being decoded: on a busy feed they are a good share of the lines.
WANTED_TYPES = POSITION_TYPES | STATIC_TYPES
_AIS_TAGS = frozenset({b"VDM", b"VDO"})



_LEADING_TIME = re.compile(rb"^(\S+)[\s,;]+(?=[!\\$])")
# A message not completed within this many seconds is dropped: its other parts were lost on the air.
PART_TIMEOUT_S = 60.0
_MAX_PENDING = 10_000




def parse_time_prefix(raw: bytes) -> float | None:
    """A leading timestamp: unix seconds (or milliseconds), or ISO 8601 (UTC unless it has an offset)."""
    text = raw.decode("ascii", "replace").strip()
    try:
        value = float(text)
    except ValueError:
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    return value / 1000.0 if value > 1e11 else value


def _tag_time(tag: bytes) -> float | None:
    """The receiver time `c:` of an NMEA 4.10 tag block (`c:1700000000,s:rx1*5A`)."""
    body = tag.split(b"*", 1)[0]
    for field in body.split(b","):
        if field.startswith(b"c:"):
            try:
                value = float(field[2:])
            except ValueError:
                return None
            return value / 1000.0 if value > 1e11 else value
    return None


def split_line(line: bytes) -> tuple[bytes, float | None]:
    """The sentence of a recorded or received line and the time it carries, if any."""
    line = line.strip()
    when: float | None = None
    if line[:1] not in (b"!", b"\\", b"$"):
        m = _LEADING_TIME.match(line)
        if m:
            when = parse_time_prefix(m.group(1))
            line = line[m.end():]
    if line[:1] == b"\\":
        end = line.find(b"\\", 1)
        if end > 0:
            t = _tag_time(line[1:end])
            when = t if t is not None else when
            line = line[end + 1:]
    return line, when


def _text(value) -> str | None:
    if not value:
        return None
    s = " ".join(str(value).replace("@", " ").split())
    return s or None


def _ais_eta(month: int, day: int, hour: int, minute: int, received: datetime) -> datetime | None:
    """AIS ETAs have no year: the occurrence of that date nearest after the report (up to a month late)."""
    if not (1 <= month <= 12 and 1 <= day <= 31 and 0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    for year in (received.year, received.year + 1):
        try:
            eta = datetime(year, month, day, hour, minute, tzinfo=UTC)
        except ValueError:
            continue
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
        lat, lon, speed, course, heading = msg.lat, msg.lon, msg.speed, msg.course, msg.heading
        if lat is None or lon is None or not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            return None  # 91 / 181: position not available
        sog = None if speed is None or speed >= 102.3 else float(speed)
        cog = None if course is None or course >= 360 else float(course)
        heading = None if heading is None or heading >= 360 else int(heading)
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


class Decoder:
    """Lines in, reports out; keeps the parts of multi-sentence messages until their last part comes."""

    def __init__(self) -> None:
        self._parts: dict[tuple, tuple[float, list[AISSentence]]] = {}
        self._last_ts: tuple[float, datetime] | None = None  # feeds stamp many lines with the same second

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
        if line[:1] == b"!":  # the common case: a bare sentence, its time is when it came
            sentence, at = line.strip(), received
        else:
            sentence, ts = split_line(line)
            at = self._time(ts) if ts is not None else received
            if not sentence or sentence[:1] not in (b"!", b"$"):
                return MALFORMED, []  # not an NMEA sentence at all (an NMEA one of another kind is unknown_type)
        try:
            fields = sentence.split(b",")
            if fields[0][3:] in _AIS_TAGS:  # the factory's own test, without its second strip and split
                s = AISSentence(sentence, fields)
            else:
                s = NMEASentenceFactory.produce(sentence)
                if not isinstance(s, AISSentence):
                    return IGNORED, []
        except AISBaseException as e:
            return (UNKNOWN_TYPE if type(e).__name__ == "UnknownMessageException" else MALFORMED), []
        except (ValueError, IndexError, TypeError):
            return MALFORMED, []
        if not s.is_valid:
            return CHECKSUM, []
        if s.frag_cnt > 1:
            s = self._assemble(s, at.timestamp())
            if s.__class__ is str:
                return s, []
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

    def _assemble(self, s: AISSentence, now: float) -> AISSentence | str:
        key = (s.seq_id, s.channel, s.talker_id, s.frag_cnt)
        if s.frag_num == 1:
            if len(self._parts) >= _MAX_PENDING:
                self._expire(now)
            self._parts[key] = (now, [s])
            return PART
        started = self._parts.get(key)
        if started is None or now - started[0] > PART_TIMEOUT_S or len(started[1]) != s.frag_num - 1:
            self._parts.pop(key, None)
            return ORPHAN
        started[1].append(s)
        if s.frag_num < s.frag_cnt:
            return PART
        del self._parts[key]
        return AISSentence.assemble_from_iterable(started[1])

    def _expire(self, now: float) -> None:
        for key in [k for k, (t, _) in self._parts.items() if now - t > PART_TIMEOUT_S]:
            del self._parts[key]
        if len(self._parts) >= _MAX_PENDING:
            self._parts.clear()
