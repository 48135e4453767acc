"""Stored text is inert wherever it is shown: hostile notes, names and reasons go in through the engine and come
out in Matrix HTML, Slack blocks and plain text without live tags, evaluated templates, pings or SQL effects."""
from __future__ import annotations

import json

from sqlalchemy import text
from sqlmodel import select

from watchfloor.commands.message import ChatMessage
from watchfloor.storage.tables import OperationRow, OutboxRow
from tests.helpers import make_parts

MX, SL = "matrix:!j:localhost", "slack:CJOINT"
ALICE, BOB = "matrix:@alice:localhost", "slack:UBOB"
HOSTILE_NOTE = ('<a href=javascript:alert(1)>x</a> <img src=x onerror=alert(1)> {{ 7*7 }} {% raw %}x{% endraw %} '
                "<!channel> <!here> @room @everyone '); DROP TABLE operation; --")


def test_hostile_text_is_stored_verbatim_and_rendered_inert(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock,
                       zone=[{"code": "LALB", "joint_rooms": [MX, SL], "watch_rooms": ["matrix:!w:localhost"]}],
                       agency=[{"code": "CBP", "members": [ALICE]}, {"code": "USCG", "members": [BOB]}])
    n = iter(range(100))

    def say(room, sender, body):
        h = parts.engine.handle(ChatMessage(platform=room.split(":")[0], room=room, sender=sender, text=body,
                                            event_id=f"$i{next(n)}"))
        return [json.loads(r.payload) for r in h.rows]

    note = HOSTILE_NOTE.replace('"', "'")
    [logged] = say(MX, ALICE, f'!op log boarding vessel="<b>@here</b>" at=33.74,-118.27 start=+1h end=2h '
                              f'note="{note}" contact="<!everyone>"')
    assert logged["text"].startswith("OP-1 logged"), logged["text"]
    with parts.db.session() as s:
        row = s.exec(select(OperationRow)).one()
        assert row.note == note  # stored as typed: escaping is the renderer's job, per format
        assert s.execute(text("SELECT count(*) FROM operation")).scalar() == 1
    say(SL, BOB, "!op log patrol at=33.741,-118.271 start=+1h end=2h")   # a conflict: alert with OP-1's details
    for room, sender in ((MX, ALICE), (SL, BOB)):
        say(room, sender, "!op show OP-1")
        say(room, sender, "!op list")
    with parts.db.session() as s:
        payloads = [json.loads(r.payload) for r in s.exec(select(OutboxRow)).all()]
    assert sum("javascript" in p["text"] for p in payloads) >= 2  # op show, in both rooms
    assert sum("<b>@\u200bHERE</b>".lower() in p["text"].lower() for p in payloads) >= 5  # lists, alert too
    for p in payloads:
        html = p["html"]
        assert "<a " not in html and "<img" not in html and "<script" not in html, html
        mrkdwn = json.dumps([b["text"]["text"] for b in p["blocks"] if b.get("type") == "section"],
                            ensure_ascii=False)
        assert "<!" not in mrkdwn and "<b>" not in mrkdwn and "&amp;lt;" not in mrkdwn, mrkdwn
        for out in (p["text"], html, mrkdwn):
            assert "49" not in out
            for mention in ("@room", "@everyone", "@here"):
                assert mention not in out, (mention, out)
    assert any("{{ 7*7 }}" in p["text"] for p in payloads)
