"""`watchfloor import noa` and `watchfloor import ais`: the command-line side (arguments, progress, output).

Registered by bot/cli/__init__.py, which imports this module only when one of these commands runs.
"""
from __future__ import annotations

import time
from pathlib import Path

import typer


def import_noa(file: Path, zone, parts) -> None:
    from watchfloor.commands.vessel_import import VesselImportError, import_noa as do_import

    try:
        ids = do_import(parts.db, file, zone)
    except VesselImportError as e:
        typer.echo("\n".join(e.problems), err=True)
        raise typer.Exit(1) from None
    finally:
        parts.db.dispose()
    from watchfloor.templates import plural

    typer.echo(f"imported {plural(len(ids), 'notice')} of arrival into {zone.code}")


def _lines_in(file: Path) -> int:
    with file.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def import_ais(file: Path, parts) -> None:
    from watchfloor.bot.cli.progress import TerminalProgress
    from watchfloor.commands.vessel_import import import_ais as do_import

    t0 = time.perf_counter()
    try:
        with TerminalProgress(unit="records") as bar:
            total = _lines_in(file) if bar.enabled else 0
            result = do_import(parts.db, parts.directory, file,
                               progress=(lambda n: bar("AIS records", n, total)) if bar.enabled else None)
    finally:
        parts.db.dispose()
    bad = {k: v for k, v in sorted(result.outcomes.items()) if v and k not in ("ok", "part", "ignored")}
    dropped = f"; dropped {sum(bad.values())} ({', '.join(f'{k} {v}' for k, v in bad.items())})" if bad else ""
    typer.echo(f"read {result.lines} records in {time.perf_counter() - t0:.1f} s: {result.positions} positions, "
               f"{result.vessels} vessel{'' if result.vessels == 1 else 's'} tracked, "
               f"{result.notices} approach notice{'' if result.notices == 1 else 's'}{dropped}")
