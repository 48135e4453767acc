"""Watches that end and times that say their day (issue 25).

`watch on` in a zone without handover times lasted until someone said `watch off`; it lasts 12 hours there and
the reply says until when. A time in a reply carries its date whenever it is not the day it is said (zone local):
`conflicts snooze CF-1 24h` at 19:54 answered "snoozed until 19:54 PST"."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from importlib import resources
from zoneinfo import ZoneInfo

import pytest

from watchfloor.templates import clock_time, render
from tests.helpers import ConsoleUser, make_parts

NO_HANDOVER = dict(zone=[{"code": "LALB", "watch_rooms": ["slack:CWATCH"]}])
HERE, NEAR = "at=33.74,-118.27", "at=33.741,-118.271"
TZ = ZoneInfo("America/Los_Angeles")


def _shifts(parts):
    from sqlmodel import select

    from watchfloor.storage.watch_tables import WatchShiftRow

    with parts.db.session() as s:
        return list(s.exec(select(WatchShiftRow)).all())


def test_a_watch_without_handover_times_lasts_twelve_hours_and_says_until_when(db_url, clock):
    parts = make_parts(db_url, clock, **NO_HANDOVER)         # clock: Tue 01 Dec 07:00 PST
    sam = ConsoleUser(parts, "LALB", "sam", "CBP", "supervisor")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    assert "sam (CBP) is on watch in LALB until Tue 01 Dec 19:00 PST" in sam.say("!watch on")
    assert "• CBP: sam until 19:00 PST" in bob.say("!watch")
    clock.advance(hours=11, minutes=59)
    assert "sam until 19:00 PST" in bob.say("!watch")
    clock.advance(minutes=2)                                 # 19:01: over by itself
    assert "Nobody is on watch" in bob.say("!watch")
    # Gone on at 19:54, the watch ends tomorrow morning, and every reply says which day.
    clock.advance(minutes=53)
    assert "until Wed 02 Dec 07:54 PST" in sam.say("!watch on")
    assert "• CBP: sam until Wed 02 Dec 07:54 PST" in bob.say("!watch")


def test_a_watch_is_at_most_24_hours(db_url, clock):
    """Issue 28: the cap on `watch on until=` had no test that noticed its removal."""
    parts = make_parts(db_url, clock, **NO_HANDOVER)         # Tue 01 Dec 07:00 PST
    sam = ConsoleUser(parts, "LALB", "sam", "CBP", "supervisor")
    assert sam.say("!watch on until=2026-12-02T07:01") == \
        "⚠ until: a watch is at most 24 hours; go on again for the next one"
    assert sam.say("!watch on until=+36h").startswith("⚠ until: a watch is at most 24 hours")
    assert _shifts(parts) == []                              # refused: nothing stored
    assert "until Wed 02 Dec 07:00 PST" in sam.say("!watch on until=2026-12-02T07:00")   # 24 h exactly is fine


def test_snoozed_until_tomorrow_says_tomorrows_date_everywhere(db_url, clock):
    parts = make_parts(db_url, clock, **NO_HANDOVER)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    sam = ConsoleUser(parts, "LALB", "sam", "CBP", "supervisor")
    clock.now = datetime(2026, 12, 2, 3, 54, tzinfo=UTC)     # Tue 01 Dec 19:54 PST
    alice.say(f"!op log boarding {HERE} start=+1h end=2h")
    assert "CF-1" in bob.say(f"!op log patrol {NEAR} start=+1h end=2h")
    assert "CF-1 snoozed until 20:54 PST" in sam.say("!conflicts snooze CF-1 1h")        # today: no date
    reply = sam.say("!conflicts snooze CF-1 24h")
    assert "CF-1 snoozed until Wed 02 Dec 19:54 PST" in reply
    assert "snoozed until Wed 02 Dec 19:54 PST" in bob.say("!conflicts")
    clock.advance(hours=5)                                   # after midnight: the snooze ends today
    assert "snoozed until 19:54 PST" in bob.say("!conflicts")


@pytest.mark.calendar_free  # hands `now` to what it renders
def test_the_clock_filter_dates_a_time_not_on_the_day_it_is_said():
    now = datetime(2026, 12, 2, 3, 54, tzinfo=UTC)           # Tue 01 Dec 19:54 PST
    assert clock_time(now + timedelta(hours=1), TZ, now) == "20:54 PST"
    assert clock_time(now + timedelta(hours=24), TZ, now) == "Wed 02 Dec 19:54 PST"
    assert clock_time(now - timedelta(hours=20), TZ, now) == "Mon 30 Nov 23:54 PST"
    assert clock_time(now, TZ, None) == "Tue 01 Dec 19:54 PST"   # nobody said when: always dated
    # Through a template and its macros: a watch announced in the watch rooms, an escalation time.
    who = {"agency": "CBP", "name": "sam", "until": now + timedelta(hours=12)}
    z = {"code": "LALB"}
    text = render("watch_announce.j2", change="on", who=who, z=z, tz=TZ, now=now).text
    assert text.endswith("until Wed 02 Dec 07:54 PST")


def test_no_template_shows_a_bare_time_of_day():
    """Every time a user reads goes through `localtime` (dated) or `clock` (dated when not today): a format
    without the day (`"%H:%M %Z"`) given to a filter is how "until 19:54" came to mean tomorrow."""
    bare = re.compile(r"""\|\s*localtime\([^)]*["']%H:%M[^"']*["']\)""")
    found = []
    for entry in resources.files("watchfloor.templates").iterdir():
        if entry.name.endswith(".j2"):
            found += [f"{entry.name}: {m.group(0)}" for m in bare.finditer(entry.read_text(encoding="utf-8"))]
    assert found == []
