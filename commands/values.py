"""Typed values of the grammar: times in the zone's time zone, durations, radii, positions, ids, markings.

Every function raises CommandError naming the field it was given.
"""
from __future__ import annotations

import math
import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from watchfloor.ioc.markings import Marking
from watchfloor.ioc.vessels import Vessel, VesselError, parse_vessel
from watchfloor.templates import clock_time

from .errors import CommandError

_DURATION = re.compile(r"^(?:(\d{1,3})d)?(?:(\d{1,4})h)?(?:(\d{1,5})m(?:in)?)?$", re.IGNORECASE)
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):?([0-5]\d)$")
_RADIUS = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)\s*(m|km|nm|nmi)?$", re.IGNORECASE)
_NM = 1852.0
MAX_ID = 2**31 - 1  # ids are 32-bit integers on PostgreSQL; a larger one cannot exist
MAX_TEXT = {"note": 1000, "contact": 200, "reason": 500, "outcome": 500, "name": 120}


def parse_duration(field: str, raw: str) -> timedelta:
    m = _DURATION.match(raw.strip())
    if not raw.strip() or not m or not any(m.groups()):
        raise CommandError(field, f"'{_clip(raw)}' is not a duration like 2h, 90m or 1h30m")
    d, h, mins = (int(g) if g else 0 for g in m.groups())
    delta = timedelta(days=d, hours=h, minutes=mins)
    if delta <= timedelta(0):
        raise CommandError(field, "duration must be longer than zero")
    return delta


PAST_GRACE = timedelta(minutes=10)  # a start this little in the past is "now, give or take typing"


def localize(field: str, naive: datetime, tz: ZoneInfo, notes: list[str] | None = None) -> datetime:
    """Attach the zone's time zone. A wall-clock time that does not exist (clocks going forward) is refused; one
    that happens twice (clocks going back) is taken at its first occurrence, and `notes` says so."""
    aware = naive.replace(tzinfo=tz)
    back = aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    if back != naive:
        raise CommandError(field, f"{naive:%Y-%m-%d %H:%M} does not exist in {tz.key} (clocks go forward)")
    second = naive.replace(tzinfo=tz, fold=1)
    if second.utcoffset() != aware.utcoffset() and notes is not None:
        notes.append(f"{field}: {naive:%H:%M} happens twice on {naive:%a %d %b} (clocks go back): took the first, "
                     f"{naive:%H:%M} {aware.tzname()}; for {naive:%H:%M} {second.tzname()} write "
                     f"{field}={second.isoformat(timespec='minutes')}")
    return aware.astimezone(UTC)


def _clock_time(m: re.Match) -> time:
    return time(int(m.group(1)), int(m.group(2)))


def _nearest(at: time, tz: ZoneInfo, now: datetime, bare: str) -> datetime:
    """The zone-local wall time `at` on the day before, of, or after now's local date: the one nearest to now
    (a tie goes to the future), or with bare="past" the latest not after now. Naive, zone local."""
    today = now.astimezone(tz).date()
    days = [datetime.combine(today + timedelta(days=d), at) for d in (-1, 0, 1)]

    def utc_of(naive: datetime) -> datetime:
        return naive.replace(tzinfo=tz).astimezone(UTC)

    if bare == "past":
        return max((d for d in days if utc_of(d) <= now), key=utc_of)
    return min(days, key=lambda d: (abs(utc_of(d) - now), utc_of(d) < now))


def _parse(field: str, raw: str, tz: ZoneInfo, now: datetime, notes: list[str] | None,
           bare: str = "nearest") -> tuple[datetime, str]:
    """A time and the form it was given in: "relative" (+2h, now), "clock" (14:00) or "date" (ISO)."""
    value = raw.strip()
    if not value:
        raise CommandError(field, "is empty")
    if value.startswith("+"):
        return now + parse_duration(field, value[1:]), "relative"
    if value.lower() == "now":
        return now, "relative"
    m = _CLOCK.match(value)
    if m:
        return localize(field, _nearest(_clock_time(m), tz, now, bare), tz, notes), "clock"
    try:
        dt = datetime.fromisoformat(value.replace(" ", "T", 1) if " " in value else value)
    except ValueError:
        raise CommandError(
            field, f"'{_clip(value)}' is not a time (use 2026-12-01T14:00, 14:00, +2h or ...Z)") from None
    if dt.year < 2000 or dt.year > 2100:
        raise CommandError(field, "year must be between 2000 and 2100")
    if dt.tzinfo is None:
        return localize(field, dt, tz, notes), "date"
    return dt.astimezone(UTC), "date"


def parse_time(field: str, raw: str, tz: ZoneInfo, now: datetime, notes: list[str] | None = None,
               bare: str = "nearest") -> datetime:
    """A time: ISO local, ISO with Z/offset, HH:MM (zone local: its occurrence nearest to now, within 12 hours
    either way; bare="past": its latest occurrence not after now), or +2h / +30m from now. Returns UTC.

    `notes` collects what the reply must say about how the time was read (an hour that happened twice)."""
    return _parse(field, raw, tz, now, notes, bare)[0]


def parse_start(raw: str, tz: ZoneInfo, now: datetime, notes: list[str] | None = None) -> datetime:
    """`start=`: a time as parse_time reads it. A start in the past (beyond PAST_GRACE) is taken only with its
    date, and `notes` says so; a bare time of day that falls in the past is refused with how to write either."""
    start, form = _parse("start", raw, tz, now, notes)
    ago = now - start
    if ago <= PAST_GRACE:
        return start
    local = start.astimezone(tz)
    if form == "clock":
        coming = local.replace(tzinfo=None) + timedelta(days=1)
        raise CommandError("start", f"{clock_time(start, tz, now)} was {_span(ago)} ago; to log a start in the past "
                                    f"give its date, start={local:%Y-%m-%dT%H:%M}; for the coming one, "
                                    f"start={coming:%Y-%m-%dT%H:%M}")
    if notes is not None:
        notes.append(f"start: {local:%a %d %b %H:%M %Z} is in the past ({_span(ago)} ago); taken as given")
    return start


def parse_end(raw: str, start: datetime, tz: ZoneInfo, now: datetime, notes: list[str] | None = None) -> datetime:
    """`end=` is a time, or a duration after start (2h, 90m). A time of day is on the start's local date, or
    the next day when it is earlier than the start (`start=22:00 end=06:00` ends the next morning)."""
    value = raw.strip()
    if _DURATION.match(value) and value and not _CLOCK.match(value):
        return start + parse_duration("end", value)
    m = _CLOCK.match(value)
    if m:
        local_start = start.astimezone(tz).replace(tzinfo=None)
        end = datetime.combine(local_start.date(), _clock_time(m))
        if end < local_start:
            end = datetime.combine(local_start.date() + timedelta(days=1), _clock_time(m))
        return localize("end", end, tz, notes)
    return parse_time("end", value, tz, now, notes)


def _span(d: timedelta) -> str:
    minutes = round(d.total_seconds() / 60)
    if minutes < 60:
        return f"{minutes} min"
    h, m = divmod(minutes, 60)
    return f"{h} h {m} min" if m else f"{h} h"


def parse_position(raw: str) -> tuple[float, float]:
    parts = [p.strip() for p in raw.replace(";", ",").split(",")]
    if len(parts) != 2 or not all(parts):
        raise CommandError("at", "must be LAT,LON in decimal degrees, e.g. at=33.74,-118.27")
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        raise CommandError("at", "must be LAT,LON in decimal degrees, e.g. at=33.74,-118.27") from None
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise CommandError("at", "must be finite numbers")
    if not -90.0 <= lat <= 90.0:
        raise CommandError("at", f"latitude {parts[0]} is out of range (-90 to 90)")
    if not -180.0 <= lon <= 180.0:
        raise CommandError("at", f"longitude {parts[1]} is out of range (-180 to 180)")
    return lat, lon


def parse_radius(raw: str, max_m: float) -> float:
    m = _RADIUS.match(raw.strip())
    if not m:
        raise CommandError("radius", f"'{_clip(raw)}' is not a distance like 500m, 2km or 1nm")
    value = float(m.group(1))
    unit = (m.group(2) or "m").lower()
    meters = value * {"m": 1.0, "km": 1000.0, "nm": _NM, "nmi": _NM}[unit]
    if meters <= 0:
        raise CommandError("radius", "must be greater than zero")
    if meters > max_m:
        raise CommandError("radius", f"must be at most {max_m / 1000:g} km")
    return meters


def parse_marking(raw: str, field: str = "mark") -> Marking:
    try:
        return Marking.parse(raw)
    except ValueError:
        raise CommandError(field, f"'{_clip(raw)}' is not a marking (UNCLASS, FOUO or LES)") from None


def parse_vessel_field(raw: str, quoted: bool, field: str = "vessel") -> Vessel:
    try:
        return parse_vessel(raw, quoted=quoted)
    except VesselError as e:
        raise CommandError(field, str(e)) from None


def parse_ref(field: str, raw: str, prefix: str) -> int:
    """`OP-12`, `op-12`, `OP12` or `12` for prefix OP."""
    m = re.match(rf"^(?:{prefix}-?)?(\d{{1,12}})$", raw.strip(), re.IGNORECASE)
    if not m or int(m.group(1)) > MAX_ID:
        raise CommandError(field, f"'{_clip(raw)}' is not an id like {prefix}-12")
    return int(m.group(1))


def parse_text(field: str, raw: str) -> str:
    limit = MAX_TEXT.get(field, 500)
    value = " ".join(raw.split())
    if len(value) > limit:
        raise CommandError(field, f"longer than {limit} characters")
    if any((ord(c) < 32) or (0x7F <= ord(c) < 0xA0) or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
           for c in value):
        raise CommandError(field, "contains control characters")
    return value


def _clip(s: str, n: int = 32) -> str:
    s = "".join(c if c.isprintable() else "?" for c in s)
    return s if len(s) <= n else s[: n - 1] + "…"
