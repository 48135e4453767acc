"""Handling markings and the one rule that decides what may be shown where."""
from __future__ import annotations

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


def marking_of_text(text: str) -> Marking:
    """A bridged message starting with `[FOUO]` or `[LES]` carries that marking."""
    head = text.lstrip()[:8].upper()
    if head.startswith("[LES]"):
        return Marking.LES
    if head.startswith("[FOUO]"):
        return Marking.FOUO
    return Marking.UNCLASS
