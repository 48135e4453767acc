"""Which zone an AIS destination names: U.S. ports by UN/LOCODE and by name, per Captain of the Port zone.

The destination is what the crew typed into the transponder (20 characters, free text): `USLAX`, `US LAX`,
`LOS ANGELES`, `LONG BEACH,USA`, `CNSHA>USLGB`, `LA/LB`. The table (data/us_port_locodes.csv) is small and
meant to be extended: a zone, a port's UN/LOCODE (or none) and the names the port goes by.
"""
from __future__ import annotations

import csv
import re
from functools import lru_cache
from importlib import resources

_NON_ALNUM = re.compile(r"[^A-Z0-9]+")
# Aliases this short (LA, LB) name a port only when they are the whole destination.
_SHORT = 3


def _words(text: str) -> str:
    """Upper case, punctuation and runs of spaces to one space: `St. Louis,USA` -> `ST LOUIS USA`."""
    return " ".join(_NON_ALNUM.split(text.upper())).strip()


@lru_cache(maxsize=1)
def _table() -> tuple[dict[str, str], list[tuple[str, str]], dict[str, str]]:
    """(LOCODE -> zone, [(alias as words, zone)] longest first, short alias squashed -> zone)."""
    text = resources.files("watchfloor.ioc").joinpath("data/us_port_locodes.csv").read_text(encoding="utf-8")
    codes: dict[str, str] = {}
    names: list[tuple[str, str]] = []
    short: dict[str, str] = {}
    for row in csv.DictReader(text.splitlines()):
        zone = row["zone"].strip()
        if row["locode"].strip():
            codes[row["locode"].strip().upper()] = zone
        for alias in row["names"].split("|"):
            words = _words(alias)
            squashed = words.replace(" ", "")
            if len(squashed) <= _SHORT or "/" in alias or "-" in alias:
                short[squashed] = zone
            if len(squashed) > _SHORT:
                names.append((words, zone))
    names.sort(key=lambda n: -len(n[0]))
    return codes, names, short


def locodes() -> dict[str, str]:
    """Every LOCODE in the table, with its zone."""
    return dict(_table()[0])


@lru_cache(maxsize=8192)
def zone_of_destination(destination: str | None) -> str | None:
    """The zone of the port an AIS destination names, or None (not a U.S. port we know, or not a port)."""
    if not destination:
        return None
    text = destination.upper()
    for arrow in (">>", "=>", "->", ">"):  # `CNSHA>USLAX`: from one port to the next; the next one counts
        if arrow in text:
            text = text.rsplit(arrow, 1)[1]
            break
    words = _words(text)
    if not words:
        return None
    codes, names, short = _table()
    squashed = words.replace(" ", "")
    if squashed in short:
        return short[squashed]
    # A LOCODE, also written with a space or dash after the country (`US LGB`, `US-LAX`), maybe followed by
    # more (`USLAX ANCH`, `USLGBPIER`).
    parts = words.split(" ")
    first = parts[0][:5] if len(parts[0]) >= 5 else None
    if first is None and len(parts[0]) == 2 and len(parts) > 1 and len(parts[1]) == 3:
        first = parts[0] + parts[1]
    if first in codes:
        return codes[first]
    padded = f" {words} "
    found = [(padded.find(f" {alias} "), -len(alias), zone) for alias, zone in names if f" {alias} " in padded]
    if found:
        return min(found)[2]  # the port named first (`LA/OAKLAND` is bound for LA first), the longest name there
    return None
