"""Reference data: zones from the shipped CSV; agencies, members and rooms from the configuration."""
from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session, delete, select

from watchfloor.ioc.zones import all_zones

from .tables import AgencyRow, MemberRow, RoomRow, ZoneRow


def sync_zones(s: Session) -> None:
    existing = {z.code: z for z in s.exec(select(ZoneRow)).all()}
    for zone in all_zones().values():
        row = existing.get(zone.code) or ZoneRow(code=zone.code, name="", district="", timezone="", lat=0, lon=0)
        row.name, row.district, row.timezone, row.lat, row.lon = (
            zone.name, zone.district, zone.timezone, zone.lat, zone.lon)
        s.add(row)


def upsert_agency(s: Session, code: str, name: str, clearance: Iterable[str]) -> AgencyRow:
    row = s.get(AgencyRow, code) or AgencyRow(code=code)
    row.name = name or row.name or code
    row.clearance = ",".join(clearance)
    s.add(row)
    return row


def replace_members(s: Session, agency: str, members: dict[str, str]) -> None:
    """Members of one agency as the configuration lists them now ({platform id: role})."""
    s.exec(delete(MemberRow).where(MemberRow.agency_code == agency))
    for pid, role in members.items():
        s.add(MemberRow(platform_id=pid, agency_code=agency, role=role))


def upsert_room(s: Session, room_id: str, *, zone: str | None, district: str | None, kind: str,
                clearance: Iterable[str]) -> None:
    row = s.get(RoomRow, room_id) or RoomRow(id=room_id)
    row.zone_code, row.district, row.kind, row.clearance = zone, district, kind, ",".join(clearance)
    s.add(row)
