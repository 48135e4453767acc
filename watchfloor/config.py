"""The configuration file (`watchfloor.toml`), validated with pydantic-settings.

The application's settings (platforms, rooms, agencies) live here, outside the domain package; the domain
keeps only its own rule settings (`watchfloor.ioc.rules`).

Every value can be overridden by `WATCHFLOOR_...` environment variables (nested keys with `__`, e.g.
`WATCHFLOOR_SLACK__BOT_TOKEN`; list tables as JSON, e.g. `WATCHFLOOR_ZONE='[{"code": "LALB"}]'`).
Secrets are `SecretStr`: they print as `**********` and never appear in a problem message.

`load_settings` reports every problem at once, each naming its key. Pydantic stops at field errors before
running whole-model checks, so each section and each list item is validated on its own, the valid parts are
kept, and the cross-section checks run on what is left: a typo in one zone does not hide a room bound twice.
"""
from __future__ import annotations

import difflib
import re
from datetime import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict,
                               SettingsError, TomlConfigSettingsSource)

from watchfloor.ioc.markings import Marking
from watchfloor.ioc.rules import ConflictRules
from watchfloor.ioc.zones import all_zones, districts

# Matrix room version 12 ids have no ":server" part (`!opaque`); older versions do (`!opaque:server`).
_ROOM_ID = re.compile(r"^(slack:[A-Z0-9]{2,}|matrix:![^:\s]+(:\S+)?|console:[A-Za-z0-9_.-]+)$")
_PLATFORM_USER = re.compile(r"^(slack:[A-Z0-9]{2,}|matrix:@[^:\s]+:\S+|console:[A-Za-z0-9_.-]+)$")
_MATRIX_USER = re.compile(r"^@[^:\s]+:\S+$")
_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")
ENV_PREFIX = "WATCHFLOOR_"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _port(v: int | None) -> int | None:
    if v is not None and not 1 <= v <= 65535:
        raise ValueError(f"{v} is not a TCP port (1-65535)")
    return v


class DatabaseConfig(_Strict):
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(v)
        except ArgumentError:
            # The URL may hold a password: name the problem, not the value.
            raise ValueError("not a database URL (sqlite:///file.db or postgresql+psycopg://user@host/db)") from None
        return v


class ServiceConfig(_Strict):
    port: int | None = None
    # Loopback unless asked: /metrics tells who is active; the container image sets 0.0.0.0 itself.
    host: str = "127.0.0.1"
    metrics_token: SecretStr | None = None  # when set, /metrics wants `Authorization: Bearer <token>`
    base_url: str | None = None  # how users reach this server: the common operating picture's links
    tile_url: str | None = None  # an internal tile server ({z}/{x}/{y}); without it the page draws a coastline

    _check_port = field_validator("port")(_port)

    @field_validator("base_url", "tile_url")
    @classmethod
    def _web_url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s?#]+(/\S*)?$", v):
            raise ValueError("not a web address (http://... or https://...)")
        return v


class SlackConfig(_Strict):
    bot_token: SecretStr
    signing_secret: SecretStr
    app_token: SecretStr | None = None
    port: int = 3000
    host: str = "0.0.0.0"
    api_url: str | None = None

    _check_port = field_validator("port")(_port)

    @field_validator("bot_token", "signing_secret")
    @classmethod
    def _not_empty(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().strip():
            raise ValueError("is empty")
        return v


class MatrixConfig(_Strict):
    homeserver: str
    user_id: str
    password: SecretStr | None = None
    access_token: SecretStr | None = None
    device_id: str = "WATCHFLOOR"
    store_path: str = "matrix-store"
    encryption: bool = True               # keys live under store_path, which must survive restarts
    les_requires_encryption: bool = True  # LES content goes only to Matrix rooms that are encrypted

    @field_validator("homeserver")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError(f"'{v}' is not a homeserver URL (http://host:port or https://host)")
        return v

    @field_validator("user_id")
    @classmethod
    def _user(cls, v: str) -> str:
        if not _MATRIX_USER.match(v):
            raise ValueError(f"'{v}' is not a Matrix user id (@name:server)")
        return v


class ZoneConfig(_Strict):
    code: str
    briefing_time: time = time(7, 0)
    joint_rooms: list[str] = Field(default_factory=list)
    watch_rooms: list[str] = Field(default_factory=list)
    watch_email: list[str] = Field(default_factory=list)  # the zone's alerts while its chat platforms are down
    approach_nm: float = Field(default=50.0, gt=0, le=1000)  # approach area: circle around the sector coordinates
    approach: list[tuple[float, float]] | None = None          # or a polygon of [lat, lon] vertices
    handover_times: list[time] = Field(default_factory=list)   # zone local: the handover digest, watch ends

    @field_validator("approach")
    @classmethod
    def _polygon(cls, v: list[tuple[float, float]] | None) -> list[tuple[float, float]] | None:
        if v is None:
            return v
        if len(v) < 3:
            raise ValueError("a polygon needs at least 3 [lat, lon] vertices")
        for lat, lon in v:
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError(f"[{lat}, {lon}] is not a [lat, lon] position")
        return v

    @field_validator("code")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        if v.upper() not in all_zones():
            raise ValueError(f"unknown zone code '{v}' (see `watchfloor zones`)")
        return v.upper()

    @field_validator("handover_times", mode="before")
    @classmethod
    def _hhmm_list(cls, v: Any) -> Any:
        return [cls._hhmm(x) for x in v] if isinstance(v, list) else v

    @field_validator("briefing_time", mode="before")
    @classmethod
    def _hhmm(cls, v: Any) -> Any:
        if isinstance(v, time):  # a TOML local time, 07:00:00 unquoted
            return v
        m = _HHMM.match(v.strip()) if isinstance(v, str) else None
        if m is None or int(m[1]) > 23 or int(m[2]) > 59:
            raise ValueError(f"'{v}' is not a time of day (HH:MM, zone local time, e.g. \"07:00\")")
        return time(int(m[1]), int(m[2]))


class DistrictConfig(_Strict):
    name: str
    watch_rooms: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _known_district(cls, v: str) -> str:
        if v not in districts():
            raise ValueError(f"unknown district '{v}' (one of {', '.join(sorted(districts()))})")
        return v


class RoomConfig(_Strict):
    id: str
    clearance: list[Marking] = Field(default_factory=lambda: [Marking.UNCLASS])
    show_withheld: bool = True


class AgencyConfig(_Strict):
    code: str
    name: str = ""
    members: list[str] = Field(default_factory=list)
    supervisors: list[str] = Field(default_factory=list)
    clearance: list[Marking] = Field(default_factory=lambda: [Marking.UNCLASS, Marking.FOUO])
    email: list[str] = Field(default_factory=list)  # briefings and handover digests of its email_zones
    email_zones: list[str] | None = None            # None: the config's one zone
    email_alerts: bool = False                      # also the conflict alerts involving it, and escalations

    @field_validator("email_zones")
    @classmethod
    def _email_zones(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        unknown = [z for z in v if z.upper() not in all_zones()]
        if unknown:
            raise ValueError(f"unknown zone code '{unknown[0]}' (see `watchfloor zones`)")
        return [z.upper() for z in v]

    @field_validator("code")
    @classmethod
    def _code(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z][A-Za-z0-9_-]{0,23}$", v):
            raise ValueError(f"'{v}' is not an agency code (letters, digits, - or _, at most 24)")
        return v.upper()


class AisConfig(_Strict):
    listen: str | None = None    # "udp://0.0.0.0:10110" (datagrams) or "tcp://host:port" (connect to a feed)
    retain_days: float = Field(default=7.0, gt=0)
    flush_seconds: float = Field(default=2.0, gt=0, le=60)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v is None:
            return v
        m = re.match(r"^(udp|tcp)://([^\s:/]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$", v.strip())
        if m is None or int(m[3]) > 65535:
            raise ValueError(f"'{v}' is not udp://host:port or tcp://host:port")
        return v.strip()


_SMTP_URL = re.compile(r"^(smtps?)://([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(?::(\d{1,5}))?/?$")
# An address as the config gives it: one mailbox, no display name (that belongs to `sender`).
_ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$")


def email_problem(address: Any) -> str | None:
    """Why a configured e-mail address is not one (None when it is)."""
    if not isinstance(address, str):
        return f"{address!r} is not an e-mail address (name@domain)"
    if "@" not in address:
        return f"'{address}' is not an e-mail address: no '@' (name@domain)"
    if not _ADDRESS.match(address.strip()):
        return f"'{address}' is not an e-mail address (name@domain)"
    return None


class EmailConfig(_Strict):
    smtp: str                        # smtp://host:587 (STARTTLS, required) or smtps://host:465 (TLS from the start)
    sender: str                      # "watchfloor <watchfloor@ioc.example>"
    user: str | None = None          # WATCHFLOOR_EMAIL__USER
    password: SecretStr | None = None  # WATCHFLOOR_EMAIL__PASSWORD
    ca_file: str | None = None       # PEM certificates to trust for the relay (an internal CA), else the system's
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)

    @field_validator("smtp")
    @classmethod
    def _smtp(cls, v: str) -> str:
        m = _SMTP_URL.match(v.strip())
        if m is None or (m[3] is not None and not 1 <= int(m[3]) <= 65535):
            # The value is not repeated: a URL with user:password@ in it would print the password.
            raise ValueError("not an SMTP URL (smtp://host:587 for STARTTLS, smtps://host:465 for TLS; the user "
                             "and password go in WATCHFLOOR_EMAIL__USER and WATCHFLOOR_EMAIL__PASSWORD)")
        return v.strip()

    @field_validator("sender")
    @classmethod
    def _sender(cls, v: str) -> str:
        from email.utils import parseaddr

        example = ' (e.g. "watchfloor <wf@ioc.example>")'
        if "@" not in v:
            raise ValueError(f"'{v}' is not an e-mail address: no '@'{example}")
        if email_problem(parseaddr(v)[1]):
            raise ValueError(f"'{v}' is not an e-mail address{example}")
        return v.strip()

    @property
    def tls(self) -> str:
        """`starttls` (smtp://) or `tls` (smtps://)."""
        return "tls" if self.smtp.startswith("smtps:") else "starttls"

    @property
    def host(self) -> str:
        return _SMTP_URL.match(self.smtp)[2].strip("[]")

    @property
    def port(self) -> int:
        m = _SMTP_URL.match(self.smtp)
        return int(m[3]) if m[3] else (465 if self.tls == "tls" else 587)


class BridgeConfig(_Strict):
    withheld_notice: bool = False  # post "a LES message was withheld" instead of nothing


class BriefingConfig(_Strict):
    grace_hours: float = 2.0


class RetentionConfig(_Strict):
    days: int = Field(default=30, ge=1)  # sent messages and handled-message ids; the audit trail is kept


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    slack: SlackConfig | None = None
    matrix: MatrixConfig | None = None
    zone: list[ZoneConfig] = Field(default_factory=list)
    district: list[DistrictConfig] = Field(default_factory=list)
    room: list[RoomConfig] = Field(default_factory=list)
    agency: list[AgencyConfig] = Field(default_factory=list)
    conflicts: ConflictRules = Field(default_factory=ConflictRules)
    bridge: BridgeConfig = Field(default_factory=BridgeConfig)
    briefing: BriefingConfig = Field(default_factory=BriefingConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    ais: AisConfig = Field(default_factory=AisConfig)
    email: EmailConfig | None = None

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first so WATCHFLOOR_... overrides the file; the file is named by load_settings.
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)


_SECTIONS: dict[str, type[BaseModel]] = {
    "database": DatabaseConfig, "service": ServiceConfig, "slack": SlackConfig, "matrix": MatrixConfig,
    "conflicts": ConflictRules, "bridge": BridgeConfig, "briefing": BriefingConfig,
    "retention": RetentionConfig, "ais": AisConfig, "email": EmailConfig,
}
_LISTS: dict[str, type[BaseModel]] = {
    "zone": ZoneConfig, "district": DistrictConfig, "room": RoomConfig, "agency": AgencyConfig,
}
_PEOPLE_KEYS = {"members", "supervisors", "supervisor", "users", "people"}


class ConfigError(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Load the TOML file (if any) with environment overrides. Raises ConfigError listing every problem."""
    raw, env = _gather(path, overrides)
    lenient, index, problems = _validate(raw)
    problems += cross_check(lenient, raw, index)
    if problems:
        order = {key: i for i, key in enumerate(raw)}

        def in_file_order(problem: str) -> int:  # a reader fixes the file top to bottom
            return order.get(re.split(r"[.\[:]", problem, maxsplit=1)[0], len(order))

        raise ConfigError([_with_origin(p, env) for p in sorted(_unique(problems), key=in_file_order)])
    return Settings.model_validate(raw)


def cross_check(s: Settings, raw: dict[str, Any] | None = None,
                index: dict[str, list[int]] | None = None) -> list[str]:
    """Problems no single field can see: rooms bound twice, malformed ids, people in two agencies, ...

    `index` maps each kept list item to its position in the file, when invalid items were left out.
    """
    problems: list[str] = []

    def ix(table: str, i: int) -> int:
        return index[table][i] if index and table in index else i

    bound: dict[str, str] = {}
    for i, z in enumerate(s.zone):
        listed: set[str] = set()
        for kind in ("joint_rooms", "watch_rooms"):
            seen_here: set[str] = set()
            for j, room in enumerate(getattr(z, kind)):
                key = f"zone[{ix('zone', i)}].{kind}[{j}]"
                if not _ROOM_ID.match(room):
                    problems.append(f"{key}: {_bad_room(room)}")
                if room in seen_here:
                    problems.append(f"{key}: room '{room}' is listed twice in {z.code} {kind}")
                elif room in bound and bound[room] != z.code and room not in listed:
                    problems.append(f"{key}: room '{room}' is bound twice (zones {bound[room]} and {z.code})")
                seen_here.add(room)
                listed.add(room)
                bound.setdefault(room, z.code)
    codes = [z.code for z in s.zone]
    for code in sorted({c for c in codes if codes.count(c) > 1}):
        problems.append(f"zone[{ix('zone', _last(codes, code))}].code: zone {code} is configured twice")
    district_of: dict[str, str] = {}
    for i, d in enumerate(s.district):
        for j, room in enumerate(d.watch_rooms):
            key = f"district[{ix('district', i)}].watch_rooms[{j}]"
            if not _ROOM_ID.match(room):
                problems.append(f"{key}: {_bad_room(room)}")
            if room in district_of and district_of[room] != d.name:
                problems.append(f"{key}: room '{room}' is bound twice (districts {district_of[room]} and {d.name})")
            district_of.setdefault(room, d.name)
    names = [d.name for d in s.district]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"district[{ix('district', _last(names, name))}].name: district {name} is configured twice")
    room_ids = [r.id for r in s.room]
    for i, r in enumerate(s.room):
        if not _ROOM_ID.match(r.id):
            problems.append(f"room[{ix('room', i)}].id: {_bad_room(r.id)}")
        elif room_ids.index(r.id) != i:
            problems.append(f"room[{ix('room', i)}].id: room '{r.id}' has two [[room]] entries")
    agency_of: dict[str, str] = {}
    for i, a in enumerate(s.agency):
        for kind in ("members", "supervisors"):
            for j, who in enumerate(getattr(a, kind)):
                key = f"agency[{ix('agency', i)}].{kind}[{j}]"
                if not _PLATFORM_USER.match(who):
                    problems.append(f"{key}: {_bad_person(who)}")
                if who in agency_of and agency_of[who] != a.code:
                    problems.append(f"{key}: '{who}' is in two agencies ({agency_of[who]} and {a.code}); "
                                    "a person belongs to one")
                agency_of.setdefault(who, a.code)
    agencies = [a.code for a in s.agency]
    for code in sorted({c for c in agencies if agencies.count(c) > 1}):
        problems.append(f"agency[{ix('agency', _last(agencies, code))}].code: agency {code} is configured twice")
    problems += _email_problems(s, ix, raw)
    if s.slack is not None and s.slack.app_token is None and s.service.port is not None \
            and s.slack.port == s.service.port:
        problems.append(f"slack.port: {s.slack.port} is also service.port; Slack's HTTP mode needs its own port")
    if raw is not None and isinstance(raw.get("matrix"), dict):
        m = raw["matrix"]
        if m.get("password") is None and m.get("access_token") is None:
            problems.append("matrix.password: missing (set matrix.password or matrix.access_token, "
                            "e.g. WATCHFLOOR_MATRIX__PASSWORD)")
    elif raw is None and s.matrix is not None and s.matrix.password is None and s.matrix.access_token is None:
        problems.append("matrix.password: missing (set matrix.password or matrix.access_token)")
    return problems


def _email_problems(s: Settings, ix, raw: dict[str, Any] | None) -> list[str]:
    """Addresses that are not addresses, one address in two agencies, e-mail zones the config does not have."""
    problems: list[str] = []
    written = raw.get("agency") if raw is not None and isinstance(raw.get("agency"), list) else None
    owner: dict[str, str] = {}
    configured = [z.code for z in s.zone]
    for i, a in enumerate(s.agency):
        key = f"agency[{ix('agency', i)}]"
        for j, address in enumerate(a.email):
            problem = email_problem(address)
            if problem:
                problems.append(f"{key}.email[{j}]: {problem}")
                continue
            known = owner.setdefault(address.strip().lower(), a.code)
            if known != a.code:
                # Each address is sent what its one agency may read: two agencies would mean two clearances.
                problems.append(f"{key}.email[{j}]: '{address}' is also an address of {known}; an address belongs "
                                "to one agency")
        # Left out, not dropped for a problem of its own (already reported).
        left_out = written is None or "email_zones" not in written[ix("agency", i)]
        if a.email and a.email_zones is None and left_out and len(configured) > 1:
            problems.append(f"{key}.email_zones: missing (the config has {len(configured)} zones: say whose "
                            "briefings go to these addresses, e.g. email_zones = [\"" + configured[0] + "\"])")
        for j, code in enumerate(a.email_zones or []):
            if code in all_zones() and code not in configured:
                problems.append(f"{key}.email_zones[{j}]: zone {code} is not configured ([[zone]])")
    for i, z in enumerate(s.zone):
        for j, address in enumerate(z.watch_email):
            problem = email_problem(address)
            if problem:
                problems.append(f"zone[{ix('zone', i)}].watch_email[{j}]: {problem}")
    return problems


def config_warnings(s: Settings) -> list[str]:
    """What is allowed but probably not meant: shown by `watchfloor config check`, never fatal."""
    out: list[str] = []
    platforms = {"slack": s.slack is not None, "matrix": s.matrix is not None, "console": True}
    bound = {r for z in s.zone for r in (*z.joint_rooms, *z.watch_rooms)} | {r for d in s.district
                                                                            for r in d.watch_rooms}
    for room in sorted(bound):
        platform = room.split(":", 1)[0]
        if platform in platforms and not platforms[platform]:
            out.append(f"room '{room}': there is no [{platform}] section, so nothing reaches this room")
    for i, r in enumerate(s.room):
        if r.id not in bound and not r.id.startswith("console:"):
            out.append(f"room[{i}].id: '{r.id}' is not a joint or watch room of any zone or district")
    for i, z in enumerate(s.zone):
        if not z.watch_rooms:
            out.append(f"zone[{i}].watch_rooms: {z.code} has no watch rooms; its alerts reach the console only")
    if s.email is None:
        for i, a in enumerate(s.agency):
            if a.email:
                out.append(f"agency[{i}].email: there is no [email] section, so nothing is sent to these addresses")
        for i, z in enumerate(s.zone):
            if z.watch_email:
                out.append(f"zone[{i}].watch_email: there is no [email] section, so nothing is sent to these "
                           "addresses")
    for i, a in enumerate(s.agency):
        if a.email_alerts and not a.email:
            out.append(f"agency[{i}].email_alerts: {a.code} has no email addresses, so its alerts go nowhere")
        if a.email and a.email_zones is None and not s.zone:
            out.append(f"agency[{i}].email: no [[zone]] is configured, so these addresses get no briefing")
    if s.service.port is None and (s.service.base_url or s.service.tile_url):
        out.append("service.port: not set, so the common operating picture (service.base_url) is not served "
                   "and `cop` gives no link")
    return out


# --- gathering and validating -----------------------------------------------------------------------------

def _gather(path: str | Path | None, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The merged raw values (overrides > environment > file) and the environment's part of them."""
    file_data: dict[str, Any] = {}
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError([f"config: file {path} not found"])
        try:
            file_data = TomlConfigSettingsSource(Settings, toml_file=Path(path))()
        except ValueError as e:  # tomllib.TOMLDecodeError names the line and column
            raise ConfigError([f"config: {path} is not valid TOML: {e}"]) from None
    try:
        env = EnvSettingsSource(Settings)()
    except SettingsError as e:
        field = re.search(r'field "(\w+)"', str(e))
        name = f"{ENV_PREFIX}{field[1].upper()}" if field else ENV_PREFIX + "..."
        raise ConfigError([f"{name}: not valid JSON for a list of tables"]) from None
    return _merge(_merge(file_data, env), _plain(overrides)), env


def _plain(value: Any) -> Any:
    """Overrides may be given as models (tests, callers building settings in code): validate them as data."""
    if isinstance(value, BaseModel):
        return {k: _plain(v) for k, v in value if k in value.model_fields_set or v is not None}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _validate(raw: dict[str, Any]) -> tuple[Settings, dict[str, list[int]], list[str]]:
    """Validate every section and list item on its own; keep what is valid for the cross checks."""
    problems: list[str] = []
    kept: dict[str, Any] = {}
    index: dict[str, list[int]] = {}
    for key, value in raw.items():
        if key in _SECTIONS:
            model = _SECTIONS[key]
            if value is None and key in ("slack", "matrix", "email"):
                continue
            if not isinstance(value, dict):
                problems.append(f"{key}: must be a table ([{key}])")
                continue
            obj, errs = _salvage(model, value, key)
            problems += errs
            if obj is not None:
                kept[key] = obj
        elif key in _LISTS:
            model = _LISTS[key]
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                problems.append(f"{key}: must be a list of tables ([[{key}]])")
                continue
            items = []
            for i, item in enumerate(value):
                obj, errs = _salvage(model, item, f"{key}[{i}]")
                problems += errs
                if obj is not None:
                    items.append(obj)
                    index.setdefault(key, []).append(i)
            kept[key] = items
        else:
            problems.append(f"{key}: unknown key{_suggest(key, [*_SECTIONS, *_LISTS], top=True)}")
    return Settings.model_construct(**kept), index, problems


def _salvage(model: type[BaseModel], data: dict[str, Any], prefix: str) -> tuple[BaseModel | None, list[str]]:
    """The model and its problems; with field errors, the model built from the other fields (if it can be)."""
    try:
        return model.model_validate(data), []
    except ValidationError as e:
        problems = [_describe(err, prefix, model) for err in e.errors()]
        bad = {err["loc"][0] for err in e.errors() if err["loc"]}
        try:
            return model.model_validate({k: v for k, v in data.items() if k not in bad}), problems
        except ValidationError:
            pass
        # A required field is bad (a zone whose code is unknown): keep the item for the cross checks anyway,
        # its bad text fields as written, so its rooms are still checked and every problem shows on one run.
        keep = {k: v for k, v in data.items() if k not in bad or isinstance(v, str)}
        if all(name in keep for name, f in model.model_fields.items() if f.is_required()):
            return model.model_construct(**keep), problems
        return None, problems


_SECRET_FIELDS = {"bot_token", "signing_secret", "app_token", "password", "access_token", "url", "metrics_token",
                  "smtp"}


def _describe(err: dict[str, Any], prefix: str, model: type[BaseModel]) -> str:
    loc = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
    kind, msg = err["type"], err["msg"].removeprefix("Value error, ")
    field = next((p for p in err["loc"] if isinstance(p, str)), "")
    shown = "" if field in _SECRET_FIELDS else repr(err.get("input"))
    if kind == "extra_forbidden":
        return f"{loc}: unknown key{_suggest(str(err['loc'][-1]), list(model.model_fields))}"
    if kind == "missing":
        return f"{loc}: missing"
    if kind == "enum":
        return f"{loc}: {shown} is not one of {err['ctx']['expected']}"
    if kind in ("int_parsing", "int_type", "float_parsing", "float_type", "bool_parsing", "bool_type",
                "string_type", "list_type") and shown:
        return f"{loc}: {shown} is not {_KINDS[kind.split('_')[0]]}"
    return f"{loc}: {msg}"


_KINDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "string": "a string",
          "list": "a list"}


def _suggest(key: str, known: list[str], top: bool = False) -> str:
    if key in _PEOPLE_KEYS:
        return " (people are listed under [[agency]] members and supervisors)"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not close:
        return ""
    if top and close[0] in _LISTS:
        return f" (did you mean [[{close[0]}]]?)"
    return f" (did you mean {close[0]}?)"


def _bad_room(room: str) -> str:
    if _PLATFORM_USER.match(room) and room.split(":", 1)[0] != "console":
        return f"'{room}' is a person, not a room (slack:C..., matrix:!id:server, console:name)"
    return f"malformed room id '{room}' (slack:C..., matrix:!id:server, console:name)"


def _bad_person(who: str) -> str:
    if _ROOM_ID.match(who):
        return f"'{who}' is a room, not a person (slack:U..., matrix:@name:server)"
    return f"malformed user id '{who}' (slack:U..., matrix:@name:server, console:name)"


def _last(values: list[str], value: str) -> int:
    return len(values) - 1 - values[::-1].index(value)


def _unique(problems: list[str]) -> list[str]:
    return list(dict.fromkeys(problems))


def _with_origin(problem: str, env: dict[str, Any]) -> str:
    """Name the environment variable when the bad value came from one, so nobody hunts for it in the file."""
    key = problem.split(":", 1)[0]
    parts = [p for p in re.split(r"[.\[]", key) if p and not p.endswith("]")]
    node: Any = env
    walked: list[str] = []
    for p in parts:
        if not isinstance(node, dict) or p not in node:
            return problem  # this value, or its absence, is the file's
        walked.append(p)
        node = node[p]
        if not isinstance(node, dict):
            break  # a list of tables comes whole from one variable
    if not walked:
        return problem
    head, rest = problem.split(":", 1)
    return f"{head} (from {ENV_PREFIX}{'__'.join(walked).upper()}):{rest}"
