"""What the AIS decoder gives the rest of the domain: position and static reports, free of pyais so that
tracks, storage and chat commands load without the decoder (CLI start-up stays under half a second)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# Outcomes of one line (the label of watchfloor_ais_sentences_total). Bounded: never free text.
OK, PART, IGNORED = "ok", "part", "ignored"
SKIPPED = "skipped"  # a comment (`#...`) or a blank line: recordings have them, they are nobody's error
EMPTY = "empty"  # a sentence with no payload (`!AIVDM,1,1,,B,,0*25`): receivers log them
CHECKSUM, MALFORMED, UNKNOWN_TYPE, ORPHAN = "checksum", "malformed", "unknown_type", "orphan"
# Never decoded: the live feed's decoding process was behind by more than it may queue, or it died with them, or
# (UDP) the kernel had no room for the datagram.
DROPPED = "dropped"
# Stamped implausibly far ahead of when it was received or processed (ioc/tracks.py FUTURE_TOLERANCE): dropped.
FUTURE = "future"
OUTCOMES = (OK, PART, IGNORED, SKIPPED, EMPTY, CHECKSUM, MALFORMED, UNKNOWN_TYPE, ORPHAN, DROPPED, FUTURE)
# The longest line read (live or recorded): an NMEA sentence is at most 82 characters, a tag block or the NAIS
# trailer adds a few dozen. A longer one is counted malformed, never held in full.
MAX_LINE = 1024


@dataclass(slots=True)
class PositionReport:
    mmsi: str
    at: datetime
    lat: float
    lon: float
    sog: float | None  # knots; None when not available
    cog: float | None  # degrees true; None when not available
    heading: int | None = None


@dataclass(slots=True)
class StaticReport:
    mmsi: str
    at: datetime
    imo: str | None = None
    name: str | None = None
    call_sign: str | None = None
    ship_type: int | None = None
    destination: str | None = None
    eta: datetime | None = None  # the ETA the crew typed into the transponder (no year in AIS: resolved)


Report = PositionReport | StaticReport
