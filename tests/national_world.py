"""The people and rooms of the national-scale load (issue 27): zones with joint and watch rooms on Slack and on
Matrix, districts with watch rooms on both, agencies (federal ones in every zone, local ones in one), members
spread over the zones and platforms, two supervisors a zone (one on each platform); and each replica's config.

`roster()` decides who is where (no I/O); `make_matrix()` makes the Matrix side real on the homeserver (accounts,
rooms, invitations and joins, in parallel); `replica_config()` is the TOML after `[service]` of one replica.
"""
from __future__ import annotations

import json
import random
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from watchfloor.ioc.zones import all_zones, get_zone

SECRET = "national-signing-secret"
FEDERAL = ("USCG", "CBP", "AMO", "HSI", "ICE", "FBI", "DEA", "NOAA")
# The first zones taken when fewer than 37 are asked for: far apart, in different time zones.
FIRST_ZONES = ("LALB", "NY", "HON", "NOLA", "GUAM", "ANC", "SJ", "PS", "MIA", "DET", "HOU", "BOS")


@dataclass
class Person:
    key: str                # "slack:U..." or "matrix:@...:localhost"
    agency: str
    zone: str
    supervisor: bool = False
    token: str = ""         # Matrix access token, once registered

    @property
    def platform(self) -> str:
        return self.key.split(":", 1)[0]

    @property
    def slack_id(self) -> str:
        return self.key.split(":", 1)[1]


@dataclass
class ZoneRooms:
    code: str
    agencies: list[str]
    people: list[Person] = field(default_factory=list)
    slack_joint: str = ""
    slack_watch: str = ""
    matrix_joint: str = ""  # room ids, once made
    matrix_watch: str = ""
    briefing: str = ""      # "HH:MM" zone local

    @property
    def district(self) -> str:
        return get_zone(self.code).district

    def rooms(self, kind: str) -> list[str]:
        """Room keys as the config names them: kind "joint" or "watch"."""
        if kind == "joint":
            return [f"slack:{self.slack_joint}", f"matrix:{self.matrix_joint}"]
        return [f"slack:{self.slack_watch}", f"matrix:{self.matrix_watch}"]

    def members_of(self, agency: str) -> list[Person]:
        return [p for p in self.people if p.agency == agency]

    def supervisors(self) -> list[Person]:
        return [p for p in self.people if p.supervisor]


@dataclass
class Roster:
    zones: list[ZoneRooms]
    agencies: list[str]
    districts: dict[str, dict[str, str]]  # name -> {"slack": channel, "matrix": room id}
    bot: dict = field(default_factory=dict)      # the bot's Matrix account (user_id, password)
    owner: dict = field(default_factory=dict)    # the account that made the Matrix rooms (reads them at the end)

    @property
    def people(self) -> list[Person]:
        return [p for z in self.zones for p in z.people]

    def zone(self, code: str) -> ZoneRooms:
        return next(z for z in self.zones if z.code == code)

    def slack_rooms(self) -> list[str]:
        return [c for z in self.zones for c in (z.slack_joint, z.slack_watch)] + \
            [d["slack"] for d in self.districts.values()]

    def matrix_rooms(self) -> list[str]:
        return [r for z in self.zones for r in (z.matrix_joint, z.matrix_watch)] + \
            [d["matrix"] for d in self.districts.values()]


def zone_codes(n: int) -> list[str]:
    rest = [c for c in all_zones() if c not in FIRST_ZONES]
    return (list(FIRST_ZONES) + rest)[:n]


def roster(zones: int, agencies: int, members: int, matrix_share: float, seed: int) -> Roster:
    """Who is where. Federal agencies are in every zone; the local ones (a port police, a port authority) each in
    one; every zone has a USCG supervisor on Matrix and a CBP supervisor on Slack."""
    rng = random.Random(seed)
    codes = zone_codes(zones)
    federal = list(FEDERAL[:max(2, min(len(FEDERAL), agencies))])
    local_codes = [f"{kind}-{code}" for kind in ("PD", "PORT", "SP") for code in codes]
    local = local_codes[:max(0, agencies - len(federal))]
    rooms = []
    for code in codes:
        mine = federal + [a for a in local if a.endswith(f"-{code}")]
        rooms.append(ZoneRooms(code, mine, slack_joint=f"CJ{code}", slack_watch=f"CW{code}"))
    n = 0

    def person(z: ZoneRooms, agency: str, matrix: bool, supervisor: bool = False) -> Person:
        nonlocal n
        n += 1
        key = f"matrix:@nat-{z.code.lower()}-{n:04d}:localhost" if matrix else f"slack:U{z.code}{n:04d}"
        return Person(key, agency, z.code, supervisor)

    for z in rooms:
        z.people += [person(z, "USCG", True, True), person(z, "CBP", False, True)]
    for i in range(max(0, members - 2 * len(rooms))):
        z = rooms[i % len(rooms)]
        z.people.append(person(z, z.agencies[(i // len(rooms)) % len(z.agencies)], rng.random() < matrix_share))
    districts = {d: {"slack": f"CD{k:02d}", "matrix": ""}
                 for k, d in enumerate(sorted({get_zone(c).district for c in codes}))}
    return Roster(rooms, federal + local, districts)


def set_briefings(r: Roster, first: datetime, spread_minutes: float) -> list[float]:
    """Each zone's briefing_time: zone i fires `first` + i/(n-1) of the spread (whole minutes), in its own time
    zone (so the config's "HH:MM" differs from zone to zone while the instants are a few minutes apart). Returns
    the instants (unix times), soonest first."""
    from datetime import timedelta

    due = set()
    for i, z in enumerate(r.zones):
        at = first + timedelta(minutes=round(i * spread_minutes / max(1, len(r.zones) - 1)))
        z.briefing = f"{at.astimezone(get_zone(z.code).tz):%H:%M}"
        due.add(at.timestamp())
    return sorted(due)


# ---- the Matrix side, real on the homeserver ----------------------------------------------------------------------

def make_matrix(synapse, r: Roster, workers: int = 8, log=print) -> None:
    """Accounts for the bot, a room owner and every Matrix member; each zone's joint room (its members) and watch
    room (its supervisors), each district's watch room. The rooms are public on the homeserver and the members join
    them without an invitation: an invitation is one more event, and the ~1,000 of a national set-up cost the
    homeserver minutes (17 s for 100 here) that measure nothing of the bot. Only the bot is invited; it joins the
    configured rooms itself."""
    r.bot = synapse.make_user("watchfloor")
    r.owner = synapse.make_user("ioc-owner")
    matrix_people = [p for p in r.people if p.platform == "matrix"]

    def register(p: Person) -> None:
        local = p.key.split(":", 2)[1].lstrip("@")
        p.token = synapse.register(local, secrets.token_urlsafe(12), displayname=local)["access_token"]

    owner, bot = r.owner["access_token"], r.bot["user_id"]

    def room(name: str) -> str:
        return synapse.create_room(owner, name=name, preset="public_chat", invite=[bot])

    with ThreadPoolExecutor(workers) as pool:
        registered = pool.map(register, matrix_people)
        joints = list(pool.map(lambda z: room(f"{z.code} joint"), r.zones))
        watches = list(pool.map(lambda z: room(f"{z.code} watch"), r.zones))
        districts = list(pool.map(lambda d: room(f"{d} district watch"), r.districts))
        list(registered)
        for z, joint, watch in zip(r.zones, joints, watches):
            z.matrix_joint, z.matrix_watch = joint, watch
        for d, rid in zip(r.districts, districts):
            r.districts[d]["matrix"] = rid
        joins = [(p, z.matrix_joint) for z in r.zones for p in z.people if p.platform == "matrix"]
        joins += [(p, z.matrix_watch) for z in r.zones for p in z.supervisors() if p.platform == "matrix"]
        list(pool.map(lambda pr: synapse.join(pr[0].token, pr[1]), joins))
    log(f"Matrix: {len(matrix_people)} members registered, {len(r.matrix_rooms())} rooms, {len(joins)} joins")


def _toml_list(items: list[str]) -> str:
    return json.dumps(items)  # a JSON array of plain strings is a TOML array


def replica_config(r: Roster, i: int, *, api_url: str, homeserver: str, ais_listen: str | None, store: Path) -> str:
    """The TOML after `[service]` for replica `i`: `{slack_port}` is left for the caller to fill (the Replica picks
    its port after writing the file)."""
    out = [f'[slack]\nbot_token = "xoxb-nat{i}"\nsigning_secret = "{SECRET}"\nport = {{slack_port}}\n'
           f'host = "127.0.0.1"\napi_url = "{api_url}"\n',
           f'[matrix]\nhomeserver = "{homeserver}"\nuser_id = "{r.bot["user_id"]}"\n'
           f'password = "{r.bot["password"]}"\ndevice_id = "WFNAT{i}"\nstore_path = "{store}"\n']
    if ais_listen:
        out.append(f'[ais]\nlisten = "{ais_listen}"\n')
    for z in r.zones:
        out.append(f'[[zone]]\ncode = "{z.code}"\nbriefing_time = "{z.briefing}"\n'
                   f'joint_rooms = {_toml_list(z.rooms("joint"))}\nwatch_rooms = {_toml_list(z.rooms("watch"))}\n')
    for name, d in r.districts.items():
        rooms = [f"slack:{d['slack']}", f"matrix:{d['matrix']}"]
        out.append(f'[[district]]\nname = "{name}"\nwatch_rooms = {_toml_list(rooms)}\n')
    for code in r.agencies:
        people = [p for p in r.people if p.agency == code]
        out.append(f'[[agency]]\ncode = "{code}"\nmembers = {_toml_list([p.key for p in people if not p.supervisor])}\n'
                   f'supervisors = {_toml_list([p.key for p in people if p.supervisor])}\n')
    return "".join(out)
