"""The one visibility rule and the marking of bridged text."""
from __future__ import annotations

import itertools

import pytest

from watchfloor.ioc.markings import Marking, highest, marking_of_text, may_show

ALL = list(Marking)
SETS = [frozenset(c) for n in range(4) for c in itertools.combinations(ALL, n)]


@pytest.mark.parametrize("marking", ALL)
def test_may_show_needs_room_and_reader(marking):
    for room, reader in itertools.product(SETS, SETS):
        assert may_show(marking, room) == (marking in room)
        assert may_show(marking, room, reader) == (marking in room and marking in reader)
        assert may_show(marking.value, [m.value for m in room], [m.value for m in reader]) == \
            (marking in room and marking in reader)


def test_highest():
    assert highest(["UNCLASS", "LES", "FOUO"]) is Marking.LES
    assert highest([]) is Marking.UNCLASS


@pytest.mark.parametrize("text,expected", [
    ("[LES] boarding at dawn", Marking.LES), ("[FOUO] x", Marking.FOUO), ("  [les] x", Marking.LES),
    ("[ FOUO ] x", Marking.FOUO), ("\u200b[LES] x", Marking.LES), ("\ufeff[LES] x", Marking.LES),
    ("*[LES]* x", Marking.LES), ("> [FOUO] quoted", Marking.FOUO), ("［ＬＥＳ］ full width", Marking.LES),
    ("`[LES]` x", Marking.LES), ("hello", Marking.UNCLASS), ("hello [LES]", Marking.UNCLASS),
    ("[LESS] x", Marking.UNCLASS), ("", Marking.UNCLASS), ("[UNCLASS] x", Marking.UNCLASS),
])
def test_marking_of_text(text, expected):
    assert marking_of_text(text) is expected
