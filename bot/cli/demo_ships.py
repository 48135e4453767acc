"""The demo's ships: generated AIS tracks (a targeted vessel sailing into the LALB approach, one loitering at
anchor, one outbound) and a small list of notices of arrival with one dangerous-cargo arrival.

The tracks go through the same AIS ingest as a live feed (sentences encoded with pyais), each report at its own
time in the last hour, so `vessel`, `arrivals`, the ETA sources and the approach notice are the real thing.
"""
from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from watchfloor.ioc.zones import get_zone

# (mmsi, imo, name, call sign, destination)
PEARL = (538009356, 9356787, "OCEAN PEARL", "V7PE4", "US LGB")
QUEEN = (366555001, 0, "HARBOR QUEEN", "WDQ4412", "LA ANCH")
CROWN = (636019999, 9244104, "ATLANTIC CROWN", "D5CR7", "CNSHA")
NOTICES = [
    # vessel_name, imo, mmsi, call_sign, flag, hours from now, last_port, cdc, persons
    ("OCEAN PEARL", "IMO9356787", "538009356", "V7PE4", "Marshall Islands", 11, "Manzanillo", "no", 22),
    ("PACIFIC DAWN", "IMO9244116", "", "9V7731", "Singapore", 28, "Busan", "no", 24),
    ("SOUTHERN GAS", "IMO9319466", "", "C6GS2", "Bahamas", 20, "Ulsan", "yes", 26),
    ("NORTHERN LIGHT", "IMO9538763", "", "LAST7", "Norway", 70, "Yokohama", "no", 21),
]


def _sentences(kind: dict) -> list[str]:
    from pyais import encode_dict

    return encode_dict(kind, sentence_type="VDM")


def _static(v) -> list[str]:
    mmsi, imo, name, call, dest = v
    return _sentences({"type": 5, "mmsi": mmsi, "imo": imo, "shipname": name, "callsign": call,
                       "destination": dest, "ship_type": 70})


def _position(mmsi: int, lat: float, lon: float, sog: float, cog: float) -> list[str]:
    return _sentences({"type": 1, "mmsi": mmsi, "lat": lat, "lon": lon, "speed": sog, "course": cog})


def seed_ships(parts, now: datetime) -> tuple[int, int]:
    """Feed the tracks and load the notices; returns (vessels, notices)."""
    from watchfloor.commands.ais_ingest import AisIngest
    from watchfloor.commands.vessel_import import import_noa

    lalb = get_zone("LALB")
    ingest = AisIngest(parts.db, parts.directory)
    ingest.resume()
    start = now - timedelta(minutes=50)
    for v in (PEARL, QUEEN, CROWN):
        for line in _static(v):
            ingest.feed(line, start)
    ingest.flush(start)  # the open targets are known from here on
    # OCEAN PEARL: from 60 nm south-southwest at 14 kn, crossing into the 50 nm approach area near the end.
    for i in range(6):
        t = start + timedelta(minutes=9 * i)
        frac = (60 - 2.3 * i * 0.9) / 60
        for line in _position(PEARL[0], lalb.lat - frac * 0.92, lalb.lon - frac * 0.45, 14.0, 24.0):
            ingest.feed(line, t)
        for line in _position(QUEEN[0], 33.705 + 0.001 * (i % 2), -118.215, 0.2, 310.0):
            ingest.feed(line, t)
        for line in _position(CROWN[0], lalb.lat - 0.1 - 0.04 * i, lalb.lon - 0.2 - 0.06 * i, 15.5, 235.0):
            ingest.feed(line, t)
    for line in _position(PEARL[0], lalb.lat - 0.76, lalb.lon - 0.37, 14.0, 24.0):  # 49 nm out
        ingest.feed(line, now - timedelta(minutes=2))
    ingest.flush(now)
    rows = ["vessel_name,imo,mmsi,call_sign,flag,eta,last_port,cdc,persons,submitted"]
    for name, imo, mmsi, call, flag, hours, port, cdc, persons in NOTICES:
        eta = (now + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%MZ")
        sub = (now - timedelta(hours=96 - hours)).strftime("%Y-%m-%dT%H:%MZ")
        rows.append(f"{name},{imo},{mmsi},{call},{flag},{eta},{port},{cdc},{persons},{sub}")
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "noa.csv"
        f.write_text("\n".join(rows) + "\n")
        ids = import_noa(parts.db, f, lalb, now)
    return 3, len(ids)
