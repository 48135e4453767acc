"""The configuration file (`watchfloor.toml`), validated with pydantic-settings.

Every value can be overridden by `WATCHFLOOR_...` environment variables (nested keys with `__`, e.g.
`WATCHFLOOR_SLACK__BOT_TOKEN`). Validation reports every problem at once, each naming its key.
"""
from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from .markings import Marking
from .zones import all_zones, districts

_ROOM_ID = re.compile(r"^(slack:[A-Z0-9]{2,}|matrix:![^:\s]+:\S+|console:[A-Za-z0-9_.-]+)$")
_PLATFORM_USER = re.compile(r"^(slack:[A-Z0-9]{2,}|matrix:@[^:\s]+:\S+|console:[A-Za-z0-9_.-]+)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseConfig(_Strict):
    url: str | None = None


class ServiceConfig(_Strict):
    port: int | None = None
    host: str = "0.0.0.0"


class SlackConfig(_Strict):
    bot_token: SecretStr
    signing_secret: SecretStr
    app_token: SecretStr | None = None
    port: int = 3000
    host: str = "0.0.0.0"
    api_url: str | None = None


class MatrixConfig(_Strict):
    homeserver: str
    user_id: str
    password: SecretStr | None = None
    access_token: SecretStr | None = None
    device_id: str = "WATCHFLOOR"
    store_path: str = "matrix-store"

    @model_validator(mode="after")
    def _credentials(self):
        if self.password is None and self.access_token is None:
            raise ValueError("needs password or access_token")
        return self


class ZoneConfig(_Strict):
    code: str
    briefing_time: time = time(7, 0)
    joint_rooms: list[str] = Field(default_factory=list)
    watch_rooms: list[str] = Field(default_factory=list)

    @field_validator("code")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        if v.upper() not in all_zones():
            raise ValueError(f"unknown zone code '{v}'")
        return v.upper()


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

    @field_validator("code")
    @classmethod
    def _code(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z][A-Za-z0-9_-]{0,23}$", v):
            raise ValueError("agency code must be letters, digits, - or _ (at most 24)")
        return v.upper()


class ConflictRulesConfig(_Strict):
    same_vessel_hours: float = 6.0
    gap_horizon_hours: float = 24.0
    gap_min_endorsers: int = 2
    escalate_after_minutes: float = 15.0
    scan_every_minutes: float = 5.0
    max_operation_hours: float = 168.0
    max_radius_km: float = 200.0
    far_from_zone_km: float = 300.0


class BridgeConfig(_Strict):
    withheld_notice: bool = False  # post "a LES message was withheld" instead of nothing


class BriefingConfig(_Strict):
    grace_hours: float = 2.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WATCHFLOOR_", env_nested_delimiter="__", extra="forbid")

    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    slack: SlackConfig | None = None
    matrix: MatrixConfig | None = None
    zone: list[ZoneConfig] = Field(default_factory=list)
    district: list[DistrictConfig] = Field(default_factory=list)
    room: list[RoomConfig] = Field(default_factory=list)
    agency: list[AgencyConfig] = Field(default_factory=list)
    conflicts: ConflictRulesConfig = Field(default_factory=ConflictRulesConfig)
    bridge: BridgeConfig = Field(default_factory=BridgeConfig)
    briefing: BriefingConfig = Field(default_factory=BriefingConfig)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first so WATCHFLOOR_... overrides the file; the file is named by load_settings.
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)

    @model_validator(mode="after")
    def _cross_checks(self):
        problems = cross_check(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def cross_check(s: Settings) -> list[str]:
    """Problems no single field can see: rooms bound twice, malformed ids, supervisors in no agency."""
    problems: list[str] = []
    bound: dict[str, str] = {}
    for i, z in enumerate(s.zone):
        for kind in ("joint_rooms", "watch_rooms"):
            for j, room in enumerate(getattr(z, kind)):
                key = f"zone[{i}].{kind}[{j}]"
                if not _ROOM_ID.match(room):
                    problems.append(f"{key}: malformed room id '{room}' (slack:C..., matrix:!id:server, console:name)")
                if room in bound and bound[room] != z.code:
                    problems.append(f"{key}: room '{room}' is bound twice (zones {bound[room]} and {z.code})")
                bound.setdefault(room, z.code)
    codes = [z.code for z in s.zone]
    for code in {c for c in codes if codes.count(c) > 1}:
        problems.append(f"zone: zone {code} is configured twice")
    for i, d in enumerate(s.district):
        for j, room in enumerate(d.watch_rooms):
            if not _ROOM_ID.match(room):
                problems.append(f"district[{i}].watch_rooms[{j}]: malformed room id '{room}'")
    for i, r in enumerate(s.room):
        if not _ROOM_ID.match(r.id):
            problems.append(f"room[{i}].id: malformed room id '{r.id}'")
    seen_members: dict[str, str] = {}
    for i, a in enumerate(s.agency):
        for kind in ("members", "supervisors"):
            for j, who in enumerate(getattr(a, kind)):
                if not _PLATFORM_USER.match(who):
                    problems.append(f"agency[{i}].{kind}[{j}]: malformed user id '{who}' (slack:U..., matrix:@u:server)")
                if who in seen_members and seen_members[who] != a.code:
                    problems.append(f"agency[{i}].{kind}[{j}]: '{who}' is in two agencies ({seen_members[who]}, {a.code})")
                seen_members.setdefault(who, a.code)
    return problems


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Load the TOML file (if any) with environment overrides. Raises ConfigError listing every problem."""
    if path is not None and not Path(path).is_file():
        raise ConfigError([f"config: file {path} not found"])
    cls = Settings
    if path is not None:
        cls = type("FileSettings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": Path(path)}})
    try:
        return cls(**overrides)
    except ValidationError as e:
        raise ConfigError(_problems(e)) from None
    except ValueError as e:  # TOML syntax errors
        raise ConfigError([f"config: {e}"]) from None


class ConfigError(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _problems(e: ValidationError) -> list[str]:
    out = []
    for err in e.errors():
        loc = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in err["loc"]).replace(".[", "[")
        msg = err["msg"].removeprefix("Value error, ")
        if not loc and ";" in msg:
            out.extend(msg.split("; "))
        elif err["type"] == "extra_forbidden":
            out.append(f"{loc}: unknown key")
        elif err["type"] == "missing":
            out.append(f"{loc}: missing")
        else:
            out.append(f"{loc}: {msg}" if loc else msg)
    return out
