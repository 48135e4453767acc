"""The 37 Captain of the Port zones, read from the shipped CSV (data, not code)."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Zone:
    code: str
    name: str
    district: str
    timezone: str
    lat: float
    lon: float

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@lru_cache(maxsize=1)
def all_zones() -> dict[str, Zone]:
    text = resources.files("watchfloor.ioc").joinpath("data/cotp_zones.csv").read_text(encoding="utf-8")
    zones = {}
    for row in csv.DictReader(text.splitlines()):
        zone = Zone(
            code=row["code"].strip(),
            name=row["name"].strip(),
            district=row["district"].strip(),
            timezone=row["timezone"].strip(),
            lat=float(row["lat"]),
            lon=float(row["lon"]),
        )
        zones[zone.code] = zone
    return zones


def get_zone(code: str) -> Zone | None:
    return all_zones().get(code.upper())


def districts() -> set[str]:
    return {z.district for z in all_zones().values()}
