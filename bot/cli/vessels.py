"""`watchfloor import noa` and `watchfloor import ais`: the command-line side (arguments, progress, output).

Registered by bot/cli/__init__.py, which imports this module only when one of these commands runs.
"""
from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import typer

# Outcomes of a record that mean it was used, or had nothing to use; every other one (the decoder's, and any the
# ingest adds) is listed as dropped, under its own name.
_USED = ("ok", "part", "ignored", "skipped")


def import_noa(file: Path, zone, parts) -> None:
    from watchfloor.commands.vessel_import import VesselImportError, import_notices

    from watchfloor.commands.gap_recheck import recheck_zone

    try:
        result = import_notices(parts.db, file, zone)
        if result.ids:
            # A notice changes its vessel's best ETA: a target it brings into the window has its gap opened now.
            recheck_zone(parts.db, parts.directory, zone.code, parts.engine.clock(), "notices of arrival imported")
    except VesselImportError as e:
        typer.echo("\n".join(e.problems), err=True)
        raise typer.Exit(e.code) from None
    finally:
        parts.db.dispose()
    from watchfloor.templates import plural

    line = f"imported {plural(len(result.ids), 'notice')} of arrival into {zone.code}"
    if result.already:
        names = ", ".join(f"{n.vessel_name} ETA {n.eta:%Y-%m-%d %H:%M}Z" for n in result.already[:5])
        more = f" and {len(result.already) - 5} more" if len(result.already) > 5 else ""
        line += f"; {len(result.already)} already there, not stored again ({names}{more})"
    typer.echo(line)


def _lines_in(file: Path) -> int:
    with file.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def import_ais(file: Path, parts, at: datetime | None = None) -> None:
    from watchfloor.bot.cli.progress import TerminalProgress
    from watchfloor.commands.vessel_import import VesselImportError, import_ais as do_import

    t0 = time.perf_counter()
    try:
        with TerminalProgress(unit="records") as bar:
            total = _lines_in(file) if bar.enabled else 0
            result = do_import(parts.db, parts.directory, file, at=at,
                               progress=(lambda n: bar("AIS records", n, total)) if bar.enabled else None)
    except VesselImportError as e:
        typer.echo("\n".join(e.problems), err=True)
        raise typer.Exit(e.code) from None
    finally:
        parts.db.dispose()
    out = result.outcomes
    bad = {k: v for k, v in sorted(out.items()) if v and k not in _USED}
    dropped = f"; dropped {sum(bad.values())} ({', '.join(f'{k} {v}' for k, v in bad.items())})" if bad else ""
    skipped = f"; skipped {out['skipped']} (comments and blank lines)" if out.get("skipped") else ""
    typer.echo(f"read {result.lines} records in {time.perf_counter() - t0:.1f} s: {result.positions} positions, "
               f"{result.vessels} vessel{'' if result.vessels == 1 else 's'} tracked, "
               f"{result.notices} approach notice{'' if result.notices == 1 else 's'}{dropped}{skipped}")
    why = result.nothing_usable()
    if why is not None:
        typer.echo(f"{file.name}: {why}", err=True)
        raise typer.Exit(1)
