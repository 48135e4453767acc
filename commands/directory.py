"""Who is who and which room is which: senders mapped to agencies and roles, rooms to zones and clearances.

Built from the configuration (and, for the console, from its flags). Adapters know only platform ids;
this is where those ids acquire an agency, a role and a clearance.
"""
from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import time
from functools import lru_cache
from importlib import resources

from watchfloor.config import Settings
from watchfloor.ioc.markings import DEFAULT_ROOM_CLEARANCE, Marking
from watchfloor.ioc.zones import Zone, get_zone

MEMBER, SUPERVISOR = "member", "supervisor"


@dataclass(frozen=True)
class Agency:
    code: str
    name: str
    clearance: frozenset[Marking]


@dataclass(frozen=True)
class Sender:
    id: str
    name: str
    agency: str | None = None
    role: str | None = None
    clearance: frozenset[Marking] = DEFAULT_ROOM_CLEARANCE

    @property
    def is_supervisor(self) -> bool:
        return self.role == SUPERVISOR

    @property
    def label(self) -> str:
        return f"[{self.agency}] {self.name}" if self.agency else self.name


@dataclass(frozen=True)
class Room:
    id: str
    zone: Zone | None
    kinds: frozenset[str] = frozenset()
    clearance: frozenset[Marking] = DEFAULT_ROOM_CLEARANCE
    show_withheld: bool = True
    district: str | None = None

    @property
    def platform(self) -> str:
        return self.id.split(":", 1)[0]


@lru_cache(maxsize=1)
def default_agencies() -> dict[str, Agency]:
    text = resources.files("watchfloor.ioc").joinpath("data/agencies.csv").read_text(encoding="utf-8")
    out = {}
    for row in csv.DictReader(text.splitlines()):
        out[row["code"]] = Agency(row["code"], row["name"], frozenset(Marking(m) for m in row["clearance"].split()))
    return out


@dataclass
class Directory:
    settings: Settings
    agencies: dict[str, Agency] = field(default_factory=dict)
    _people: dict[str, tuple[str, str]] = field(default_factory=dict)  # platform id -> (agency, role)
    _rooms: dict[str, Room] = field(default_factory=dict)
    # Platform rules that may lower a room's clearance at the moment of asking (a Matrix room that is not
    # encrypted carries no LES): each answers yes/no for a room id; the platform knowledge stays in bot/.
    _les_barred: list[Callable[[str], bool]] = field(default_factory=list)
    # E-mail recipients per zone: (agency, alerts too, the address as a room cleared for the agency).
    _email: dict[str, list[tuple[str, bool, Room]]] = field(default_factory=dict)

    def __post_init__(self):
        self.agencies = dict(default_agencies())
        for a in self.settings.agency:
            self.agencies[a.code] = Agency(a.code, a.name or a.code, frozenset(a.clearance))
            for who in a.members:
                self._people[who] = (a.code, MEMBER)
            for who in a.supervisors:
                self._people[who] = (a.code, SUPERVISOR)  # supervisors are members too
        cleared = {r.id: r for r in self.settings.room}
        for z in self.settings.zone:
            zone = get_zone(z.code)
            kinds: dict[str, set[str]] = {}
            for rid in z.joint_rooms:
                kinds.setdefault(rid, set()).add("joint")
            for rid in z.watch_rooms:
                kinds.setdefault(rid, set()).add("watch")
            for rid, ks in kinds.items():
                self._rooms[rid] = self._room(rid, zone, ks, cleared)
        for d in self.settings.district:
            for rid in d.watch_rooms:
                existing = self._rooms.get(rid)
                ks = set(existing.kinds) if existing else set()
                ks.add("district")
                self._rooms[rid] = self._room(rid, existing.zone if existing else None, ks, cleared, d.name)
        self._email_recipients()

    def _email_recipients(self) -> None:
        """Each agency address as a room of its own (`email:<address>`), cleared for what its agency is cleared for
        and told nothing of what it may not read (`show_withheld` off: no "details withheld" stub either)."""
        configured = [z.code for z in self.settings.zone]
        for a in self.settings.agency:
            zones = a.email_zones if a.email_zones is not None else (configured if len(configured) == 1 else [])
            for code in zones:
                zone = get_zone(code)
                for address in a.email:
                    room = Room(email_room(address), zone, frozenset({"email"}), frozenset(a.clearance), False,
                                zone.district)
                    self._email.setdefault(zone.code, []).append((a.code, a.email_alerts, room))

    def email_rooms(self, zone_code: str) -> list[Room]:
        """The agency addresses given the zone's briefings and handover digests, in a fixed order."""
        return sorted((room for _a, _alerts, room in self._email.get(zone_code, [])), key=lambda r: r.id)

    def email_alert_rooms(self, zone_code: str) -> list[tuple[str, Room]]:
        """(agency, address) for the agencies of the zone that take their conflict alerts by e-mail too."""
        return sorted(((agency, room) for agency, alerts, room in self._email.get(zone_code, []) if alerts),
                      key=lambda ar: ar[1].id)

    def email_recipient(self, room_id: str) -> tuple[str, Room] | None:
        """(agency, room in its first e-mail zone) of an agency address given as its room id; None for another."""
        for code in sorted(self._email):
            for agency, _alerts, room in self._email[code]:
                if room.id == room_id:
                    return agency, room
        return None

    def watch_email_rooms(self, zone_code: str) -> list[Room]:
        """The zone's `watch_email` addresses, each read like the least cleared of the zone's chat watch rooms (what
        every watch room of the zone may see)."""
        z = next((z for z in self.settings.zone if z.code == zone_code), None)
        if z is None or not z.watch_email:
            return []
        chat = [r for r in self.zone_rooms(zone_code, "watch") if r.platform != "console"]
        least = min(chat, key=lambda r: (len(r.clearance), r.id)) if chat else None
        clearance = least.clearance if least else DEFAULT_ROOM_CLEARANCE
        zone = get_zone(zone_code)
        return [Room(email_room(a), zone, frozenset({"email", "watch"}), clearance,
                     least.show_withheld if least else True, zone.district) for a in z.watch_email]

    @staticmethod
    def _room(rid: str, zone: Zone | None, kinds: set[str], cleared, district: str | None = None) -> Room:
        cfg = cleared.get(rid)
        clearance = frozenset(cfg.clearance) if cfg else DEFAULT_ROOM_CLEARANCE
        return Room(rid, zone, frozenset(kinds), clearance, cfg.show_withheld if cfg else True,
                    district or (zone.district if zone else None))

    def add_console(self, zone_code: str, user: str, agency: str | None, role: str | None) -> tuple[Room, Sender]:
        """The console room of a zone, cleared for whatever the console user's agency is cleared for."""
        sender = self.sender(f"console:{user}", user)
        if sender.agency is None and agency:
            code = agency.upper()
            if code not in self.agencies:
                self.agencies[code] = Agency(code, code, frozenset({Marking.UNCLASS, Marking.FOUO}))
            self._people[f"console:{user}"] = (code, SUPERVISOR if role == SUPERVISOR else MEMBER)
            sender = self.sender(f"console:{user}", user)
        elif sender.agency is not None and role == SUPERVISOR:
            self._people[f"console:{user}"] = (sender.agency, SUPERVISOR)
            sender = self.sender(f"console:{user}", user)
        zone = get_zone(zone_code)
        room = Room(console_room(zone.code), zone, frozenset({"joint", "watch", "console"}),
                    sender.clearance if sender.agency else DEFAULT_ROOM_CLEARANCE, True, zone.district)
        self._rooms[room.id] = room
        return room, sender

    def sender(self, platform_id: str, name: str | None = None) -> Sender:
        display = name or platform_id.split(":", 1)[-1]
        entry = self._people.get(platform_id)
        if entry is None:
            return Sender(platform_id, display)
        agency, role = entry
        return Sender(platform_id, display, agency, role, self.agencies[agency].clearance)

    def bar_les(self, rule: Callable[[str], bool]) -> None:
        """Register `rule(room_id) -> True` when nothing marked LES may go to that room now."""
        self._les_barred.append(rule)

    def _effective(self, room: Room) -> Room:
        if Marking.LES in room.clearance and any(rule(room.id) for rule in self._les_barred):
            return replace(room, clearance=room.clearance - {Marking.LES})
        return room

    def room(self, room_id: str) -> Room:
        if room_id in self._rooms:
            return self._effective(self._rooms[room_id])
        if room_id.startswith("email:"):
            # An address's first zone: where delivery tells the watch that mail to it was refused for good.
            found = self.email_recipient(room_id)
            if found is not None:
                return found[1]
        if room_id.startswith("console:") and get_zone(room_id.split(":", 1)[1]):
            zone = get_zone(room_id.split(":", 1)[1])
            return Room(room_id, zone, frozenset({"joint", "watch", "console"}), DEFAULT_ROOM_CLEARANCE, True,
                        zone.district)
        return Room(room_id, None)

    def rooms(self) -> list[Room]:
        return [self._effective(r) for r in self._rooms.values()]

    def zone_rooms(self, zone_code: str, kind: str) -> list[Room]:
        rooms = [r for r in self.rooms() if r.zone and r.zone.code == zone_code and kind in r.kinds]
        console = console_room(zone_code)
        if kind in ("watch", "joint") and not any(r.id == console for r in rooms):
            rooms.append(self.room(console))
        return rooms

    def district_rooms(self, district: str) -> list[Room]:
        return [r for r in self.rooms() if "district" in r.kinds and r.district == district]

    def configured_zones(self) -> list[Zone]:
        return [get_zone(z.code) for z in self.settings.zone]

    def briefing_time(self, zone_code: str) -> time:
        for z in self.settings.zone:
            if z.code == zone_code:
                return z.briefing_time
        return time(7, 0)

    def agency_known(self, code: str) -> bool:
        return code.upper() in self.agencies


def console_room(zone_code: str) -> str:
    return f"console:{zone_code}"


def email_room(address: str) -> str:
    """An e-mail address as the outbox names it: a room of the `email` platform."""
    return f"email:{address.strip()}"
