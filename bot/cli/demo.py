"""`watchfloor demo`: a realistic day in two zones (Los Angeles–Long Beach and New York), to try every
feature in the console room.

Everything goes through the engine as chat commands from console users, so the operations, targets,
conflicts, alerts and audit trail are the real thing, not rows written behind the bot's back. Times are
relative to now, so the day is always today.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from sqlmodel import col, func, select

from watchfloor.commands.message import ChatMessage
from watchfloor.ioc.model import OPEN_CONFLICT_STATUSES
from watchfloor.ioc.zones import get_zone
from watchfloor.storage.tables import ConflictRow, OperationRow, TargetRow

# (zone, user, agency, role) of everyone who speaks in the demo.
PEOPLE = {
    "alice": ("LALB", "CBP", None), "bob": ("LALB", "USCG", None), "hank": ("LALB", "HSI", None),
    "pete": ("LALB", "PD", None), "carlos": ("LALB", "PORT", None), "amy": ("LALB", "AMO", None),
    "sam": ("LALB", "USCG", "supervisor"), "sofia": ("LALB", "CBP", "supervisor"),
    "nina": ("NY", "USCG", None), "nora": ("NY", "USCG", "supervisor"), "omar": ("NY", "PD", None), "carla": ("NY", "CBP", None),
    "henry": ("NY", "HSI", None), "paula": ("NY", "PORT", None),
}


def script(now: datetime) -> list[tuple[str, str]]:
    """The day, as (user, message) in order. Hours are relative to `now`."""
    def at(hours: float) -> str:
        return (now + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%MZ")

    def yesterday(hour: int) -> str:
        """That hour of yesterday in LALB: the briefing's "Yesterday" lists it, whatever the hour now."""
        tz = get_zone("LALB").tz
        day = now.astimezone(tz).date() - timedelta(days=1)
        return datetime.combine(day, time(hour), tzinfo=tz).isoformat(timespec="minutes")

    return [
        # The watch: who the alerts call by name (`!watch`); the demo has no handover times, so each says until when.
        ("sam", "!watch on until=+12h"), ("sofia", "!watch on until=+12h"), ("nora", "!watch on until=+12h"),
        # Los Angeles–Long Beach: yesterday's boarding, this morning's settled clash, today's plan.
        ("alice", f'!op log boarding vessel=IMO9074729 at=33.72,-118.26 start={yesterday(9)} end=2h '
                  'contact="CBP desk"'),
        ("alice", '!op done OP-1 outcome="crew list matched manifest; no findings"'),
        ("amy", f'!op log surveillance at=33.70,-118.23 radius=2km start={at(-6)} end=2h '
                'note="AMO air unit over the outer harbor"'),
        ("bob", f'!op log escort vessel=IMO9633018 at=33.705,-118.24 radius=1nm start={at(-5.5)} end=2h '
                'note="tanker escort to anchorage"'),
        ("sam", '!conflicts resolve CF-1 joint note="AMO covers the escort from the air"'),
        ("carlos", f'!op log security-zone at=33.755,-118.215 radius=300m start={at(0.5)} end=8h '
                   'note="cruise terminal, two sailings"'),
        ("alice", f'!op log boarding vessel=IMO9312341 at=33.716,-118.262 start={at(2)} end=2h '
                  'contact="CBP desk 562-555-0100"'),
        ("bob", f'!op log patrol at=33.712,-118.266 radius=1nm start={at(2.5)} end=3h contact="CG Sector LA-LB"'),
        ("pete", f'!op log patrol at=33.735,-118.18 start={at(1)} end=4h note="Long Beach outer harbor"'),
        ("hank", f'!op log surveillance vessel=366987654 at=33.72,-118.22 start={at(4)} end=6h mark=LES '
                 'note="source reporting on a crew member"'),
        ("hank", f'!target nominate IMO9356787 name="OCEAN PEARL" eta={at(10)} priority=high '
                 'reason="manifest anomalies on the last two calls"'),
        ("alice", f'!target nominate IMO9244116 name="PACIFIC DAWN" eta={at(30)} '
                  'reason="late advance notice amendment"'),
        ("bob", "!target endorse TGT-2"),
        # New York: an escort, two agencies on one vessel, and a target two agencies want covered.
        ("nina", f'!op log escort vessel=IMO9411226 at=40.55,-73.98 radius=1nm start={at(3)} end=3h '
                 'note="LNG carrier inbound, Ambrose to berth"'),
        ("omar", f'!op log patrol at=40.70,-74.02 start={at(1)} end=6h note="Lower Manhattan waterfront"'),
        ("carla", f'!op log inspection vessel=IMO9177337 at=40.67,-74.03 start={at(5)} end=3h '
                  'contact="CBP NY seaport"'),
        ("henry", f'!op log surveillance vessel=IMO9177337 at=40.655,-74.03 start={at(9)} end=2h mark=FOUO '
                  'note="follow-up on the inspection findings"'),
        ("carla", f'!target nominate IMO9522001 name="NORDIC STAR" eta={at(14)} '
                  'reason="container seals reported tampered at last port"'),
        ("henry", f'!target nominate IMO9522001 eta={at(14)}'),
        ("paula", f'!op log exercise at=40.675,-74.06 radius=1km start={at(26)} end=4h '
                  'note="port authority spill drill, Upper Bay"'),
    ]


@dataclass
class DemoResult:
    operations: int = 0
    targets: int = 0
    open_conflicts: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    vessels: int = 0
    notices: int = 0


class DemoError(Exception):
    pass


def operations_in(db) -> int:
    with db.session() as s:
        return s.exec(select(func.count(OperationRow.id))).one()


def seed(parts, now: datetime | None = None) -> DemoResult:
    """Play the day through the engine. Raises DemoError if any command is refused (a demo that half works
    teaches the wrong thing)."""
    from watchfloor.commands.posting import for_clearance
    from watchfloor.storage.outbox import payload

    now = now or datetime.now(UTC)
    senders = {}
    for user, (zone, agency, role) in PEOPLE.items():
        senders[user] = parts.directory.add_console(zone, user, agency, role)
    result = DemoResult()
    for user, text in script(now):
        room, sender = senders[user]
        msg = ChatMessage(platform="console", room=room.id, sender=sender.id, text=text,
                          event_id=f"demo-{uuid.uuid4()}", sender_name=sender.name)
        handled = parts.engine.handle(msg)
        if handled.error:
            raise DemoError(f"{user}: {text}\n  -> {handled.error}")
        result.replies += [for_clearance(payload(r), sender.clearance)["text"] for r in handled.rows]
    from watchfloor.bot.cli.demo_ships import seed_ships

    result.vessels, result.notices = seed_ships(parts, now)
    with parts.db.session() as s:
        result.operations = s.exec(select(func.count(OperationRow.id))).one()
        result.targets = s.exec(select(func.count(TargetRow.id))).one()
        result.open_conflicts = [f"CF-{cf.id} {cf.zone_code} {cf.kind}" for cf in s.exec(
            select(ConflictRow).where(col(ConflictRow.status).in_(OPEN_CONFLICT_STATUSES))
            .order_by(ConflictRow.id)).all()]
    return result


def free_demo_url(refused: str) -> str:
    """A database URL the demo would take: `demo.db`, else `demo-2.db`, `demo-3.db`... beside the refused SQLite
    file (in the current directory for another database), the first that does not exist yet."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    try:
        url = make_url(refused)
        where = Path(url.database).parent if url.get_backend_name() == "sqlite" and url.database else Path()
    except Exception:  # whatever it was, the suggestion stands on its own
        where = Path()
    n = 1
    while (where / (name := "demo.db" if n == 1 else f"demo-{n}.db")).exists():
        n += 1
    return f"sqlite:///{where / name}"


def next_steps(db_flag: str) -> list[str]:
    return [
        "Try it in the console room (each line is a chat message; Ctrl-D leaves):",
        f"  watchfloor console --zone LALB --user sam --agency USCG --role supervisor{db_flag}",
        "      !op list        !target list        !conflicts        !conflicts all",
        "      !conflicts ack CF-2        !conflicts resolve CF-2 delay note=\"CG patrol starts after the boarding\"",
        "      !watch        !handover        !brief now        !zone        !help",
        f"  watchfloor console --zone LALB --user hank --agency HSI{db_flag}",
        "      !op list   (HSI is cleared for LES: OP-8 shows in full; CBP and USCG see it too, PORT does not)",
        "      !op log escort vessel=IMO9356787 at=33.73,-118.26 start=+9h end=3h   (closes the OCEAN PEARL gap)",
        "      !vessel IMO9356787   (OCEAN PEARL on AIS: position, ETA and its source)        !arrivals 96h",
        f"  watchfloor console --zone NY --user carla --agency CBP{db_flag}",
        "      !conflicts        !target show TGT-3        !op update OP-11 start=+20h   (moves CBP 9 h clear of HSI: CF-4 closes)",
        f"  watchfloor brief --zone NY{db_flag}        watchfloor conflicts scan --zone LALB{db_flag}",
        f"  watchfloor audit show --zone LALB{db_flag}        watchfloor audit verify{db_flag}",
    ]
