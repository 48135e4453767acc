"""Handling markings and the one rule that decides what may be shown where."""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from enum import Enum


class Marking(str, Enum):
    UNCLASS = "UNCLASS"
    FOUO = "FOUO"
    LES = "LES"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @classmethod
    def parse(cls, value: str) -> "Marking":
        return cls(value.strip().upper())


_RANK = {Marking.UNCLASS: 0, Marking.FOUO: 1, Marking.LES: 2}
ALL_MARKINGS = frozenset(Marking)
DEFAULT_ROOM_CLEARANCE = frozenset({Marking.UNCLASS})


def highest(markings: Iterable[Marking | str]) -> Marking:
    ms = [Marking(m) for m in markings]
    return max(ms, key=lambda m: m.rank) if ms else Marking.UNCLASS


def may_show(
    marking: Marking | str,
    room_clearance: Iterable[Marking | str],
    reader_clearance: Iterable[Marking | str] | None = None,
) -> bool:
    """True when an item with `marking` may appear in a room with `room_clearance`.

    A reply to a sender also needs the sender's agency cleared (`reader_clearance`); room-wide posts
    (alerts, relays, briefings) pass None. Every output path calls this and nothing else.
    """
    m = Marking(marking)
    if m not in {Marking(c) for c in room_clearance}:
        return False
    if reader_clearance is not None and m not in {Marking(c) for c in reader_clearance}:
        return False
    return True


_HEAD = re.compile(r"^\[\s*(LES|FOUO|UNCLASS)\s*\]", re.IGNORECASE)
_LEADING_NOISE = "*_~`>|"


def marking_of_text(text: str) -> Marking:
    """A bridged message starting with `[FOUO]` or `[LES]` carries that marking.

    Read generously: what the sender meant as a marking must never be relayed as UNCLASS because of leading
    formatting (`*[LES]*`, `> [LES]`), invisible characters (a zero-width space or BOM a client inserted),
    lower case, inner spaces or full-width brackets (`［ＬＥＳ］`).
    """
    head = unicodedata.normalize("NFKC", text[:64])
    i = 0
    while i < len(head) and (head[i].isspace() or head[i] in _LEADING_NOISE
                             or unicodedata.category(head[i]) in ("Cf", "Cc", "Zs")):
        i += 1
    m = _HEAD.match(head[i:])
    return Marking(m.group(1).upper()) if m else Marking.UNCLASS
