"""The `watchfloor` command line."""
from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

from watchfloor.ioc.zones import all_zones, get_zone

# Heavy libraries (SQLAlchemy, pydantic-settings, matplotlib, the Slack and Matrix SDKs) are imported inside the
# commands that use them: every command must start in under half a second (bench/bench_startup.py).

# Plain help (click's layout): Rich's panels showed a `<bool>` beside every flag and `<str>` for every value, and
# importing Rich cost `--help` a tenth of a second. Each option names what it takes (`--db URL`).
_PLAIN = {"no_args_is_help": True, "rich_markup_mode": None}
app = typer.Typer(help="watchfloor: interagency operations, targeting and deconfliction in chat.",
                  add_completion=False, pretty_exceptions_enable=False, **_PLAIN)
db_app = typer.Typer(help="Database schema.", **_PLAIN)
import_app = typer.Typer(help="Bulk loading: operations, notices of arrival, AIS feeds.", **_PLAIN)
conflicts_app = typer.Typer(help="Conflicts.", **_PLAIN)
config_app = typer.Typer(help="Configuration.", **_PLAIN)
audit_app = typer.Typer(help="The audit trail.", **_PLAIN)
app.add_typer(db_app, name="db")
app.add_typer(import_app, name="import")
app.add_typer(conflicts_app, name="conflicts")
app.add_typer(config_app, name="config")
app.add_typer(audit_app, name="audit")

DbOpt = Annotated[Optional[str], typer.Option("--db", metavar="URL", help="database URL (default $WATCHFLOOR_DB_URL "
                                                                             "or sqlite:///watchfloor.db)")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", metavar="FILE", help="configuration (watchfloor.toml)")]
ZoneOpt = Annotated[str, typer.Option("--zone", metavar="ZONE", help="COTP zone code, e.g. LALB")]


def fail(message: str, code: int = 2) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _database(db: str | None):
    """Open the database a command names; a URL that cannot be parsed exits 2 with one line (no password)."""
    from sqlalchemy.exc import ArgumentError

    from watchfloor.storage.db import Database, default_url

    _opened.append(db or default_url())
    try:
        return Database(db)
    except ArgumentError:
        fail(f"db: '{_masked(db or default_url())}' is not a database URL "
             "(e.g. sqlite:///watchfloor.db or postgresql+psycopg://user@host/db)")


def _masked(url: str) -> str:
    """A URL as typed, password replaced: it may be too malformed for SQLAlchemy to render it for us."""
    import re

    return re.sub(r"(://[^:/@\s]*:)[^/\s]*@", r"\1***@", url)


def _database_problem(e: BaseException) -> str | None:
    """One line for a database that cannot be reached (exit 1), or None for anything else."""
    import re

    from sqlalchemy.exc import InterfaceError, OperationalError

    if not isinstance(e, (OperationalError, InterfaceError)):
        return None
    orig = getattr(e, "orig", None) or e
    first = next((line.strip() for line in str(orig).splitlines() if line.strip()), type(orig).__name__)
    where = _masked(_opened[-1]) if _opened else "the database"
    secret = re.search(r"://[^:/@\s]*:([^/\s]*)@", _opened[-1]) if _opened else None
    if secret and "@" in secret.group(1):  # the driver would quote part of the password back as the host
        return f"db: cannot use {where}: a '@' in the password must be written %40"
    if secret and secret.group(1):
        first = first.replace(secret.group(1), "***")
    return f"db: cannot use {where}: {first[:200]}"


_opened: list[str] = []


def _zone(code: str):
    zone = get_zone(code)
    if zone is None:
        fail(f"zone: unknown zone '{code}' (see `watchfloor zones`)")
    return zone


def _settings(config: Path | None):
    from watchfloor.config import ConfigError, load_settings

    try:
        return load_settings(config)
    except ConfigError as e:
        fail("\n".join(e.problems))


def _parts(config: Path | None, db: str | None):
    from watchfloor.bot.wiring import build
    from watchfloor.config import ConfigError

    settings = _settings(config)
    database = _database(db or settings.database.url)
    try:
        return build(settings=settings, database=database)
    except ConfigError as e:
        fail("\n".join(e.problems))


def _reading(config: Path | None, db: str | None):
    """The database (at head) and the directory, for a command that only reads: no engine and no mirroring of
    the configuration into the database, which `_parts` does for commands that act."""
    from watchfloor.commands.directory import Directory

    settings = _settings(config)
    database = _database(db or settings.database.url)
    database.upgrade()
    return database, Directory(settings)


@app.command()
def console(
    zone: ZoneOpt,
    user: Annotated[str, typer.Option("--user", metavar="NAME", help="your name in this room")],
    agency: Annotated[Optional[str], typer.Option("--agency", metavar="AGENCY",
                                                  help="your agency code, e.g. CBP")] = None,
    role: Annotated[Optional[str], typer.Option("--role", metavar="ROLE",
                                                help="member (default) or supervisor")] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """The zone's chat room on a terminal or a pipe.

    One message per line from stdin (a prompt on a terminal); prints every reply and alert the bot posts there.
    """
    from watchfloor.bot.console import ConsoleRoom, lines

    z = _zone(zone)
    if role is not None and role not in ("member", "supervisor"):
        fail(f"role: '{role}' is not member or supervisor")
    if not user.replace("-", "").replace("_", "").replace(".", "").isalnum():
        fail("user: use letters, digits, '.', '-' or '_'")
    if agency is not None and not agency.replace("-", "").replace("_", "").isalnum():
        fail("agency: use letters, digits, '-' or '_'")
    parts = _parts(config, db)
    room, sender = parts.directory.add_console(z.code, user, agency, role)
    chat = ConsoleRoom(parts.engine, room, sender)
    history = Path.home() / ".watchfloor_history"
    for line in lines(sys.stdin, f"{z.code} {sender.label}> ", history):
        chat.say(line)
    parts.db.dispose()


@app.command()
def run(config: Annotated[Path, typer.Option("--config", metavar="FILE",
                                             help="configuration (watchfloor.toml)")]) -> None:
    """Run every configured adapter, the bridge and the scheduler.

    Slack, Matrix, the AIS feed, the health server and the scheduled jobs, until SIGTERM or SIGINT.
    """
    from watchfloor.bot.runner import run_service
    from watchfloor.bot.single_run import AlreadyRunning, hold_sqlite_run_lock
    from watchfloor.config import ConfigError, load_settings

    try:
        settings = load_settings(config)
    except ConfigError as e:
        fail("\n".join(e.problems))
    try:
        held = hold_sqlite_run_lock(settings.database.url)
    except AlreadyRunning as e:
        fail(str(e))
    try:
        code = run_service(settings)
    finally:
        if held is not None:
            held.close()
    raise typer.Exit(code)


@app.command()
def brief(
    zone: ZoneOpt,
    at: Annotated[Optional[str], typer.Option("--at", metavar="TIME", help="briefing time, zone local unless it has "
                                              "an offset: 07:00, 2026-12-01T07:00, +1h (default: now)")] = None,
    picture: Annotated[Optional[Path], typer.Option("--picture", metavar="PNG",
                                                    help="also write the timeline picture to this file")] = None,
    email: Annotated[Optional[str], typer.Option("--email", metavar="ADDRESS",
                                                 help="send it now to this address, as the agency it belongs to "
                                                      "would get it (to check [email])")] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print the zone's briefing as it would be posted.

    With --picture, write its timeline PNG too; with --email, send it to that address instead.
    """
    from watchfloor.commands.briefing import build_briefing
    from watchfloor.commands.errors import CommandError
    from watchfloor.commands.values import parse_time
    from watchfloor.ioc.markings import ALL_MARKINGS
    from watchfloor.templates import render

    z = _zone(zone)
    if email is not None:
        from watchfloor.config import email_problem

        if email_problem(email):
            fail(f"email: {email_problem(email)}")
    now = datetime.now(UTC)
    try:
        when = parse_time("at", at, z.tz, now) if at else now
    except CommandError as e:
        fail(e.line)
    if email is not None:
        _email_briefing(_parts(config, db), z, when, email)
        return
    database, directory = _reading(config, db)
    with database.session() as s:
        data = build_briefing(s, directory, z, when, ALL_MARKINGS)
    # Said on the briefing's day: its times on that day go without their date.
    typer.echo(render("briefing.j2", now=when, **data).text)
    if picture is not None:
        from watchfloor.bot.timeline import timeline
        from watchfloor.commands.cop_feed import agency_colours

        with database.session() as s:  # each agency in its colour of the zone, as on the operating picture's page
            colours = agency_colours(s, z.code, data["by_agency"])
        drawn = timeline(data, colours)
        if drawn is None:
            typer.echo("picture: none (no operations that day)")
        else:
            picture.parent.mkdir(parents=True, exist_ok=True)
            picture.write_bytes(drawn.png)
            typer.echo(f"picture: {picture}")
    database.dispose()


def _email_briefing(parts, zone, when, address: str) -> None:
    """`brief --email`: the briefing sent now, straight to the relay (not through the outbox: the answer is the
    point), as the agency owning the address would get it; an address of no agency gets what UNCLASS may read."""
    import asyncio

    from watchfloor.bot.email.send_now import BriefingNotSent, send_briefing_now

    if parts.settings.email is None:
        fail("email: there is no [email] section in the configuration (smtp, sender)")
    try:
        line = asyncio.run(send_briefing_now(parts, zone, when, address))
    except BriefingNotSent as e:
        parts.db.dispose()
        fail(f"email: {e}", 1)
    parts.db.dispose()
    typer.echo(line)


@app.command()
def zones() -> None:
    """List the COTP zones: code, name, district, time zone."""
    for z in all_zones().values():
        typer.echo(f"{z.code:<6} {z.name:<45} {z.district:<12} {z.timezone}")


@import_app.command("ops")
def import_ops(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="CSV (header row) or JSON Lines", exists=True,
                                         dir_okay=False)],
    zone: Annotated[Optional[str], typer.Option("--zone", metavar="ZONE",
                                                help="zone of the rows without a zone column")] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Bulk-load operations from CSV or JSON Lines.

    Every row validated, all or nothing (errors name the row and field).

    CSV: a header row, then one operation a row; columns in any order, an empty cell leaves that key out, a zone
    column or --zone:

    \b
      type,agency,vessel,at,radius,start,end,mark,note,contact
      boarding,CBP,IMO9074729,"33.74,-118.27",500m,+2h,2h,UNCLASS,"pilot boards 0600",CBP desk
      patrol,USCG,,"33.741,-118.271",1nm,+3h,+5h,FOUO,,

    JSON Lines: one object a line, the same keys:

    \b
      {"type": "patrol", "agency": "USCG", "at": "33.741,-118.271", "start": "+3h", "end": "3h"}

    Values as in `op log`: times like 2026-12-01T15:00 (zone local, or with Z or an offset) or +2h (from now);
    end a time or a duration after start (2h).
    """
    from watchfloor.templates import plural
    import time

    from watchfloor.bot.cli.progress import TerminalProgress
    from watchfloor.commands.importer import ImportError_, import_ops as do_import

    if zone is not None:
        zone = _zone(zone).code
    parts = _parts(config, db)
    t0 = time.perf_counter()
    try:
        with TerminalProgress() as progress:
            result = do_import(parts.engine, file, zone, progress=progress)
    except ImportError_ as e:
        fail("\n".join(e.problems), code=1)
    typer.echo(f"imported {plural(result.count, 'operation')} (OP-{result.first_id}..OP-{result.last_id}) "
               f"in {time.perf_counter() - t0:.1f} s; {plural(len(result.conflicts), 'conflict')} raised")


@import_app.command("noa")
def import_noa(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="CSV with a header row", exists=True, dir_okay=False)],
    zone: Annotated[str, typer.Option("--zone", metavar="ZONE", help="COTP zone the vessels are arriving in")],
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Load notices of arrival from CSV.

    Every row validated, all or nothing (errors name the row and field).

    \b
      vessel_name,imo,mmsi,call_sign,flag,eta,last_port,cdc,persons,submitted
      OCEAN PEARL,IMO9356787,,9HA5512,Malta,+30h,Busan,no,22,
      SOUTHERN GAS,9411226,538001234,V7AB3,Marshall Islands,+50h,Yokohama,yes,25,2026-11-29T10:00Z

    imo as IMO9356787 or its 7 digits; eta and submitted zone local unless they carry Z or an offset (or +30h
    from now); cdc (certain dangerous cargo) yes or no.
    """
    from watchfloor.bot.cli.vessels import import_noa as run_import

    run_import(file, _zone(zone), _parts(config, db))


@import_app.command("ais")
def import_ais(
    file: Annotated[Path, typer.Argument(help="NMEA lines (optionally timestamped or tag blocks) or the national "
                                              "AIS archive CSV", exists=True, dir_okay=False)],
    at: Annotated[Optional[str], typer.Option("--at", metavar="TIME", help="when the file was recorded, for lines that carry no "
                                                           "time of their own (UTC unless it has an offset)")] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Load a recorded AIS feed, processed as the live feed is, in each record's own time."""
    from zoneinfo import ZoneInfo

    from watchfloor.bot.cli.vessels import import_ais as run_import
    from watchfloor.commands.errors import CommandError
    from watchfloor.commands.values import parse_time

    when = None
    if at is not None:
        try:
            when = parse_time("at", at, ZoneInfo("UTC"), datetime.now(UTC))
        except CommandError as e:
            fail(e.line)
    run_import(file, _parts(config, db), at=when)


@conflicts_app.command("scan")
def conflicts_scan(
    zone: ZoneOpt,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Re-check a zone and print its open conflicts.

    Every stored operation and target of the zone is checked again; what changed is alerted as usual.
    """
    from watchfloor.commands.conflicts_scan import scan_and_list

    z = _zone(zone)
    parts = _parts(config, db)
    for line in scan_and_list(parts.engine, z.code):
        typer.echo(line)


@db_app.command("upgrade")
def db_upgrade(db: DbOpt = None) -> None:
    """Bring the schema to the current version (Alembic)."""
    database = _database(db)
    database.upgrade()
    typer.echo(f"database at head: {database.engine.url.render_as_string(hide_password=True)}")


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(metavar="FILE", help="configuration (watchfloor.toml)")]) -> None:
    """Validate a config and list every problem, naming each key."""
    from watchfloor.templates import plural
    from watchfloor.config import ConfigError, config_warnings, load_settings

    try:
        settings = load_settings(file)
    except ConfigError as e:
        for p in e.problems:
            typer.echo(p)
        typer.echo(f"{file}: {plural(len(e.problems), 'problem')}")
        raise typer.Exit(1)
    warnings = config_warnings(settings)
    if settings.matrix is not None:
        from watchfloor.bot.matrix.check import homeserver_warnings

        warnings += homeserver_warnings(settings)
    for w in warnings:
        typer.echo(f"warning: {w}")
    platforms = [name for name in ("slack", "matrix", "email") if getattr(settings, name) is not None]
    typer.echo(f"{file}: ok ({plural(len(settings.zone), 'zone')}, {plural(len(settings.district), 'district')}, "
               f"{plural(len(settings.agency), 'agency', 'agencies')}, platforms: {', '.join(platforms) or 'none'}"
               f"{f', service port {settings.service.port}' if settings.service.port else ''})")


@app.command()
def demo(db: DbOpt = None) -> None:
    """Fill a fresh database with a demo day in two zones.

    A realistic day in LALB and NY, played through the bot as chat commands, to try every feature.
    """
    from watchfloor.templates import plural
    from watchfloor.bot.cli.demo import DemoError, free_demo_url, next_steps, operations_in, seed
    from watchfloor.bot.wiring import build
    from watchfloor.config import ConfigError, load_settings
    from watchfloor.storage.db import default_url

    url = db or default_url()
    database = _database(url)
    try:
        parts = build(None, url, settings=load_settings(None), database=database)
    except ConfigError as e:
        fail("\n".join(e.problems))
    existing = operations_in(parts.db)
    if existing:
        parts.db.dispose()
        fail(f"db: {parts.db.engine.url.render_as_string(hide_password=True)} already has "
             f"{plural(existing, 'operation')}; the demo fills a fresh database (e.g. --db {free_demo_url(url)})",
             code=1)
    try:
        result = seed(parts)
    except DemoError as e:
        parts.db.dispose()
        fail(f"demo: a step was refused: {e}", code=1)
    parts.db.dispose()
    shown = parts.db.engine.url.render_as_string(hide_password=True)
    typer.echo(f"Demo day loaded into {shown}: {plural(result.operations, 'operation')} and "
               f"{plural(result.targets, 'target')} in LALB and NY; "
               f"{plural(len(result.open_conflicts), 'open conflict')} "
               f"({', '.join(result.open_conflicts)}).")
    for line in next_steps(f" --db {db}" if db else ""):
        typer.echo(line)


@audit_app.command("verify")
def audit_verify(db: DbOpt = None) -> None:
    """Check the audit trail's hash chain; name the first record altered or removed."""
    from watchfloor.templates import plural
    from watchfloor.storage.audit import verify

    database = _database(db)
    with database.session() as s:
        count, problem = verify(s)
    if problem:
        typer.echo(f"audit trail broken at {problem} ({plural(count, 'record')} read)")
        raise typer.Exit(1)
    typer.echo(f"audit trail intact: {plural(count, 'record')}")


@audit_app.command("show")
def audit_show(
    zone: ZoneOpt,
    since: Annotated[Optional[str], typer.Option("--since", metavar="TIME",
                                                 help="from this time on, e.g. 2026-12-01T00:00 or 07:00")] = None,
    db: DbOpt = None,
) -> None:
    """Print the audit trail of a zone."""
    from sqlmodel import select

    from watchfloor.commands.errors import CommandError
    from watchfloor.commands.values import parse_time
    from watchfloor.storage.tables import AuditRow

    z = _zone(zone)
    database = _database(db)
    q = select(AuditRow).where(AuditRow.zone_code == z.code)
    if since:
        try:
            q = q.where(AuditRow.at >= parse_time("since", since, z.tz, datetime.now(UTC), bare="past"))
        except CommandError as e:
            fail(e.line)
    with database.session() as s:
        for row in s.exec(q.order_by(AuditRow.id)).all():
            local = row.at.astimezone(z.tz).strftime("%Y-%m-%d %H:%M:%S %Z")
            typer.echo(f"{row.id:>6} {local} {row.actor} [{row.agency_code or '-'}] {row.room or '-'} "
                       f"{row.action} {row.entity or ''} {row.detail}")


def main() -> None:
    """Run the CLI; a bad argument exits 2 with one line naming it (no boxes, no usage dump)."""
    try:  # typer >= 0.20 vendors click
        from typer._click.exceptions import ClickException, UsageError
    except ImportError:  # pragma: no cover - older typer with click installed
        from click.exceptions import ClickException, UsageError

    try:
        code = app(standalone_mode=False)
    except UsageError as e:
        typer.echo(f"watchfloor: {' '.join(e.format_message().split())}", err=True)
        raise SystemExit(2) from None
    except ClickException as e:
        typer.echo(f"watchfloor: {' '.join(e.format_message().split())}", err=True)
        raise SystemExit(e.exit_code) from None
    except typer.Abort:
        raise SystemExit(1) from None
    except Exception as e:
        if type(e).__module__.split(".")[0] != "sqlalchemy" or (line := _database_problem(e)) is None:
            raise
        typer.echo(line, err=True)
        raise SystemExit(1) from None
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
