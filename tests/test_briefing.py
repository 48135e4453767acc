"""The morning briefing as rooms receive it: content, clearance per room, the timeline picture, and the
on-demand forms (`brief now`, `watchfloor brief`) giving the same briefing."""
from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime

import pytest
from PIL import Image
from sqlmodel import select
from typer.testing import CliRunner

from watchfloor.bot.cli import app
from watchfloor.bot.scheduler import JobScheduler
from watchfloor.commands.posting import for_clearance
from watchfloor.storage.tables import OutboxRow
from tests.helpers import ConsoleUser, make_parts

LES_ROOM, UNCLASS_ROOM, WATCH_ROOM = "slack:CJOINTLES", "slack:CJOINTPUB", "matrix:!watch:localhost"
SETTINGS = {
    "zone": [{"code": "LALB", "joint_rooms": [LES_ROOM, UNCLASS_ROOM], "watch_rooms": [WATCH_ROOM]}],
    "room": [{"id": LES_ROOM, "clearance": ["UNCLASS", "FOUO", "LES"]},
             {"id": WATCH_ROOM, "clearance": ["UNCLASS", "FOUO"]}],
}
BRIEFING_AT = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # 07:00 PST on Wed 2 Dec


def _day_of_operations(parts, clock):
    """Tue 1 Dec: yesterday's work gets done; Wed 2 Dec: three agencies plan, one of them LES."""
    cbp = ConsoleUser(parts, "LALB", "alice", "CBP")
    uscg = ConsoleUser(parts, "LALB", "bob", "USCG")
    hsi = ConsoleUser(parts, "LALB", "hank", "HSI")
    sup = ConsoleUser(parts, "LALB", "sam", "USCG", "supervisor")
    assert "OP-1" in uscg.say("!op log patrol at=33.70,-118.20 start=2026-12-01T08:00 end=2h")
    uscg.say('!op done OP-1 outcome="2 vessels checked"')
    cbp.say('!target nominate IMO9074729 eta=2026-12-01T10:00 name="Old Lady"')
    cbp.say('!target close TGT-1 outcome="boarded, cleared"')
    cbp.say('!op log boarding vessel=IMO9074729 at=33.74,-118.27 start=2026-12-02T09:00 end=2h contact="CBP desk"')
    uscg.say("!op log patrol at=33.741,-118.271 radius=1nm start=2026-12-02T10:00 end=2026-12-02T12:00")
    hsi.say('!op log surveillance vessel=IMO9301548 at=33.75,-118.28 start=2026-12-02T13:00 end=3h mark=LES '
            'contact="HSI duty"')
    cbp.say('!target nominate 366123456 eta=2026-12-02T15:00 priority=high name="Sea Breeze"')
    uscg.say("!target endorse TGT-2")
    hsi.say("!target nominate IMO9074729 eta=2026-12-02T18:00")
    sup.say("!conflicts ack CF-1")
    clock.now = BRIEFING_AT


def _briefings(parts) -> dict[str, dict]:
    with parts.db.session() as s:
        rows = s.exec(select(OutboxRow).where(OutboxRow.kind == "briefing")).all()
    return {r.room: json.loads(r.payload) for r in rows}


def _lanes(image: dict) -> list[str]:
    png = base64.b64decode(image["data_b64"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    img = Image.open(io.BytesIO(png))
    img.verify()  # a decodable, complete PNG, not just the right first bytes
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size[0] >= 600
    return img.text["Lanes"].split(",")


def test_briefing_content_and_clearance_per_room(db_url, clock):
    parts = make_parts(db_url, clock, **SETTINGS)
    _day_of_operations(parts, clock)
    sched = JobScheduler(parts, clock)
    posted = sched.post_briefing("LALB", BRIEFING_AT)
    assert posted == 4  # two joint rooms, the watch room, the console room
    got = _briefings(parts)
    les, pub, watch = got[LES_ROOM]["text"], got[UNCLASS_ROOM]["text"], got[WATCH_ROOM]["text"]

    assert "Wednesday 02 December 2026 07:00 PST" in les
    # Today's operations by agency, with local times and contacts.
    assert "CBP:\n  • OP-2 CBP boarding · IMO9074729" in les and "09:00 PST – 11:00 PST · contact CBP desk" in les
    assert "USCG:\n  • OP-3 USCG patrol" in les
    # The LES operation: in the LES-cleared room, nowhere in the others (not even its contact or vessel).
    assert "OP-4 HSI surveillance [LES]" in les and "contact HSI duty" in les
    for text in (pub, watch):
        assert "surveillance" not in text and "HSI duty" not in text and "IMO9301548" not in text
        assert "(1 operation withheld at this room's clearance)" in text
    # Arrivals: who covers each, and who asked for it but has nothing planned.
    assert "TGT-2 MMSI 366123456 \"Sea Breeze\" · high" in les and "NOT COVERED (no operation from CBP, USCG)" in les
    assert "TGT-3 IMO9074729" in les and "covered by CBP (no operation from HSI)" in les
    # Open conflicts with their owners.
    assert "CF-1 overlap" in les and "owned by sam" in les
    # Yesterday: done operations and closed targets, with outcomes.
    assert "done: OP-1 USCG patrol" in les and "2 vessels checked" in les
    assert "closed: TGT-1 IMO9074729" in les and "boarded, cleared" in les
    # Participation over 7 days; the LES work is not counted where it may not be shown.
    assert "• HSI: 1 operation, 1 target, 1 endorsement" in les  # a nomination counts as an endorsement
    assert "• USCG: 2 operations, 0 targets, 1 endorsement" in les
    assert "• HSI: 0 operations, 1 target" in pub

    # The picture: one lane per agency, and only the lanes the room may see.
    assert _lanes(got[LES_ROOM]["image"]) == ["CBP", "HSI", "USCG"]
    assert _lanes(got[UNCLASS_ROOM]["image"]) == ["CBP", "USCG"]
    # The console room carries a rendering and a picture per clearance; each reader gets theirs.
    console = got["console:LALB"]
    assert _lanes(for_clearance(console, ["UNCLASS"])["image"]) == ["CBP", "USCG"]
    assert _lanes(for_clearance(console, ["UNCLASS", "FOUO", "LES"])["image"]) == ["CBP", "HSI", "USCG"]
    assert "HSI duty" not in for_clearance(console, ["UNCLASS", "FOUO"])["text"]

    assert sched.post_briefing("LALB", BRIEFING_AT) == 0  # the same day again: nothing new
    assert len(_briefings(parts)) == 4


def test_brief_now_and_cli_give_the_same_briefing(sqlite_url, clock, tmp_path):
    parts = make_parts(sqlite_url, clock, **SETTINGS)
    _day_of_operations(parts, clock)
    JobScheduler(parts, clock).post_briefing("LALB", BRIEFING_AT)
    scheduled = _briefings(parts)[LES_ROOM]["text"]

    picture = tmp_path / "lalb.png"
    result = CliRunner().invoke(app, ["brief", "--zone", "LALB", "--at", "2026-12-02T07:00", "--db", sqlite_url,
                                      "--picture", str(picture)])
    assert result.exit_code == 0, result.output
    printed, _, tail = result.output.rpartition("\npicture: ")
    assert printed.strip() == scheduled
    assert tail.strip() == str(picture)
    assert Image.open(picture).text["Lanes"] == "CBP,HSI,USCG"

    # `--at` with an offset is taken as given: 15:00Z is the same 07:00 PST briefing.
    result = CliRunner().invoke(app, ["brief", "--zone", "LALB", "--at", "2026-12-02T15:00Z", "--db", sqlite_url])
    assert result.output.strip() == scheduled

    # `brief now` in the room at the briefing time: same sections, at the reader's clearance.
    hank = ConsoleUser(parts, "LALB", "hank2", "HSI")
    now = hank.say("!brief now")
    assert now.splitlines()[0] == scheduled.splitlines()[0]
    assert "OP-4 HSI surveillance [LES]" in now and "covered by CBP (no operation from HSI)" in now


def test_console_writes_the_picture_and_prints_its_path(sqlite_url, clock, tmp_path, monkeypatch):
    from watchfloor.bot.console import ConsoleRoom

    monkeypatch.setenv("WATCHFLOOR_PICTURE_DIR", str(tmp_path / "pics"))
    parts = make_parts(sqlite_url, clock, **SETTINGS)
    _day_of_operations(parts, clock)
    room, sender = parts.directory.add_console("LALB", "pat", "PORT", None)
    out = io.StringIO()
    chat = ConsoleRoom(parts.engine, room, sender, out=out)
    JobScheduler(parts, clock).post_briefing("LALB", BRIEFING_AT)
    chat.poll()
    text = out.getvalue()
    assert "Morning briefing" in text
    path = text.rsplit("picture: ", 1)[1].strip()
    assert path == str(tmp_path / "pics" / "briefing-LALB-2026-12-02.png")
    assert Image.open(path).text["Lanes"] == "CBP,USCG"  # the port authority is not cleared for LES


@pytest.mark.parametrize("zone,header", [("GUAM", "Thursday 03 December 2026 07:00 ChST"),
                                         ("SJ", "Wednesday 02 December 2026 17:00 AST")])
def test_quiet_day_has_no_picture_and_says_so(sqlite_url, clock, zone, header):
    parts = make_parts(sqlite_url, clock, zone=[{"code": zone}])
    clock.now = datetime(2026, 12, 2, 21, 0, tzinfo=UTC)
    assert JobScheduler(parts, clock).post_briefing(zone, clock.now) == 1  # its console room
    payload = _briefings(parts)[f"console:{zone}"]
    assert "image" not in payload
    assert header in payload["text"]
    assert "None logged." in payload["text"] and "No targets arriving." in payload["text"]


def test_yesterday_lists_what_ran_yesterday_by_the_operations_own_times(db_url, clock):
    """Issue 25: "Yesterday" went by when an operation was last edited, so one marked done the next morning never
    appeared. It lists what ended yesterday (zone local), done, cancelled or still open past its end (overdue)."""
    parts = make_parts(db_url, clock, **SETTINGS)             # clock: Tue 01 Dec 07:00 PST
    cbp = ConsoleUser(parts, "LALB", "alice", "CBP")
    uscg = ConsoleUser(parts, "LALB", "bob", "USCG")
    cbp.say("!op log boarding at=33.74,-118.27 start=2026-11-30T09:00 end=2h")      # OP-1, yesterday
    uscg.say("!op log patrol at=33.50,-118.00 start=2026-11-30T13:00 end=2h")       # OP-2, yesterday
    uscg.say("!op log escort at=33.60,-118.10 start=2026-11-30T20:00 end=2h")       # OP-3, yesterday, forgotten
    cbp.say("!op log inspection at=33.40,-118.30 start=2026-11-29T09:00 end=2h")    # OP-4, the day before
    cbp.say("!op log dive at=33.30,-118.40 start=2026-11-30T23:00 end=2h")          # OP-5, ends today
    assert "OP-1 done" in cbp.say('!op done OP-1 outcome="crew list matched"')      # marked done this morning
    assert "OP-2 cancelled" in uscg.say('!op cancel OP-2 reason="weather"')
    cbp.say("!op done OP-4")
    cbp.say("!op done OP-5")
    brief = uscg.say("!brief")
    yesterday = brief.split("Yesterday", 1)[1].split("Participation", 1)[0]
    assert "• done: OP-1 CBP boarding" in yesterday and "crew list matched" in yesterday
    assert "• cancelled: OP-2 USCG patrol" in yesterday and "weather" in yesterday
    assert "• overdue: OP-3 USCG escort" in yesterday
    assert "OP-4" not in yesterday and "OP-5" not in yesterday
    assert "OP-5 CBP dive" in brief.split("Today's operations", 1)[1].split("Arrivals", 1)[0]


def test_an_evening_briefing_lists_and_draws_tonight_s_operations_within_the_watch_s_horizon(sqlite_url, clock):
    """Briefed at 19:00, the watch runs until 13:00 tomorrow: an operation at 04:00 is in it, one at 14:00 not."""
    parts = make_parts(sqlite_url, clock, zone=[{"code": "LALB", "briefing_time": "19:00",
                                                 "joint_rooms": [UNCLASS_ROOM]}])
    cbp = ConsoleUser(parts, "LALB", "alice", "CBP")
    assert "OP-1" in cbp.say("!op log patrol at=33.70,-118.20 start=2026-12-02T04:00 end=1h")
    assert "OP-2" in cbp.say("!op log patrol at=33.70,-118.20 start=2026-12-02T14:00 end=1h")
    at = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)  # 19:00 PST on Tue 1 Dec
    clock.now = at
    JobScheduler(parts, clock).post_briefing("LALB", at)
    payload = _briefings(parts)[UNCLASS_ROOM]
    listed = payload["text"].split("Today's operations", 1)[1].split("Arrivals", 1)[0]
    assert "until Wed 02 Dec 13:00 PST" in listed
    assert "OP-1" in listed and "OP-2" not in listed
    assert _lanes(payload["image"]) == ["CBP"]  # tonight's patrol drawn on the picture
