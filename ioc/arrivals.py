"""Notices of arrival and the list of expected arrivals built from them, AIS and targets."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .eta import Eta

NOA_HORIZON_HOURS = 96  # a notice of arrival is due 96 hours before the vessel reaches a U.S. port
NOA_COLUMNS = ("vessel_name", "imo", "mmsi", "call_sign", "flag", "eta", "last_port", "cdc", "persons", "submitted")


@dataclass(frozen=True)
class Notice:
    zone: str
    vessel_name: str
    imo: str | None
    mmsi: str | None
    call_sign: str | None
    flag: str | None
    eta: datetime
    last_port: str | None
    cdc: bool
    persons: int | None
    submitted: datetime | None

    def vessel_keys(self) -> list[str]:
        keys = []
        if self.imo:
            keys.append(f"imo:{self.imo}")
        if self.mmsi:
            keys.append(f"mmsi:{self.mmsi}")
        return keys


@dataclass
class Arrival:
    """One vessel expected in a zone; `eta` is the best one we have with its source. `name` is empty when no
    source names it (it is then labelled by its IMO or MMSI)."""

    name: str
    keys: list[str]
    eta: Eta
    cdc: bool = False
    imo: str | None = None
    mmsi: str | None = None
    target_id: int | None = None


def same_vessel(a: list[str], b: list[str]) -> bool:
    """The same vessel across sources when IMO or MMSI match."""
    return bool(set(a) & set(b))


def merge(arrivals: list[Arrival]) -> list[Arrival]:
    """One entry per vessel (the earliest-listed source wins; a CDC flag from any source stays), soonest first."""
    out: list[Arrival] = []
    for a in arrivals:
        twin = next((o for o in out if same_vessel(o.keys, a.keys)), None)
        if twin is None:
            out.append(a)
            continue
        twin.keys = list(dict.fromkeys(twin.keys + a.keys))
        twin.name = twin.name or a.name
        twin.cdc = twin.cdc or a.cdc
        twin.imo = twin.imo or a.imo
        twin.mmsi = twin.mmsi or a.mmsi
        if twin.target_id is None:
            twin.target_id = a.target_id
    return sorted(out, key=lambda a: a.eta.at)
