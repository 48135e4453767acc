"""A message longer than a platform takes in one post (Matrix: 64 KB an event; Slack: 50 blocks, ~40,000
characters) reaches it as several posts, in order, each within the limit, with nothing left out."""
from __future__ import annotations

import json
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from watchfloor.bot.adapter import MessageLimits, PermanentSendError, TransientSendError
from watchfloor.bot.delivery import Delivery
from watchfloor.bot.matrix.events import message_content
from watchfloor.bot.slack.adapter import SlackAdapter
from watchfloor.commands.importer import import_ops
from watchfloor.commands.message import ChatMessage
from watchfloor.storage.tables import OutboxRow
from tests.helpers import ConsoleUser, make_parts

SLACK_WATCH, MATRIX_WATCH = "slack:C0WATCH", "matrix:!watch:localhost"
AGENCIES = ["CBP", "USCG", "HSI", "PD", "FBI", "DEA"]
REF = re.compile(r"CF-\d+")


def settings(api_url: str | None = None) -> dict:
    out = dict(zone=[{"code": "LALB", "watch_rooms": [SLACK_WATCH, MATRIX_WATCH]}],
               agency=[{"code": "CBP", "members": ["slack:UALICE", "matrix:@alice:localhost"]}])
    if api_url:
        out["slack"] = {"bot_token": "xoxb-test", "signing_secret": "s", "api_url": api_url}
    return out


def overlapping_ops(parts, tmp_path: Path, n: int, agencies: list[str]) -> str:
    """`n` operations at one place and time, by the given agencies in turn: every pair of agencies conflicts.
    Returns their start, as typed."""
    rows = ["type,agency,vessel,at,radius,start,end,mark,note,contact"]
    start = f"{parts.engine.clock() + timedelta(days=1):%Y-%m-%dT%H:%MZ}"  # tomorrow on the parts' clock
    rows += [f'patrol,{agencies[i % len(agencies)]},,"33.74,-118.27",,{start},2h,,,' for i in range(n)]
    path = tmp_path / "ops.csv"
    path.write_text("\n".join(rows) + "\n")
    import_ops(parts.engine, path, "LALB")
    return start


@pytest.fixture(scope="module")
def many_conflicts(tmp_path_factory) -> Path:
    """A SQLite database with over 400 open conflicts in LALB, built once for the tests that copy it."""
    from tests.conftest import Clock

    folder = tmp_path_factory.mktemp("many")
    parts = make_parts(f"sqlite:///{folder / 'wf.db'}", Clock(), **settings())
    overlapping_ops(parts, folder, 30, ["USCG", "CBP", "AMO", "HSI", "ICE", "FBI", "DEA", "CHP", "PD", "PORT", "NOAA"])
    parts.db.dispose()
    return folder / "wf.db"


def copy_of(db: Path, tmp_path: Path) -> str:
    shutil.copy(db, tmp_path / "wf.db")
    return f"sqlite:///{tmp_path / 'wf.db'}"


def listing(parts, room: str, sender: str) -> OutboxRow:
    """`conflicts` asked in a room: its reply, waiting in the outbox (the only row waiting there: the import's
    summary alert is marked sent, so only the listing is looked at)."""
    with parts.db.session() as s:
        for row in s.exec(select(OutboxRow).where(OutboxRow.room == room, OutboxRow.status == "pending")).all():
            row.status = "sent"
            s.add(row)
    handled = parts.engine.handle(ChatMessage(platform=room.split(":")[0], room=room, sender=sender,
                                              text="!conflicts", event_id=f"ask-{room}"))
    (row,) = [r for r in handled.rows if r.room == room]
    return row


class Homeserver:
    """The Matrix side at the adapter boundary: builds each event's content as the Matrix adapter does and
    refuses what a homeserver refuses (over 65,536 bytes: M_TOO_LARGE); can fail one send on demand."""

    platform = "matrix"

    def __init__(self):
        self.events: list[dict] = []
        self.fail_on: set[int] = set()  # fail the send with this number (1-based), once
        self.sends = 0

    async def start(self, on_message):
        pass

    async def stop(self):
        pass

    async def send(self, room, kind, payload, *, target_id=None, reply_to_remote=None):
        self.sends += 1
        if self.sends in self.fail_on:
            raise TransientSendError("homeserver unreachable")
        content = message_content(kind, payload, target_id=target_id, reply_to_remote=reply_to_remote)
        if len(json.dumps(content, ensure_ascii=False).encode()) + 1024 > 65_536:  # plus the event's envelope
            raise PermanentSendError("M_TOO_LARGE: event too large")
        self.events.append(content)
        return f"$event{len(self.events)}"

    async def healthy(self):
        return True


async def test_a_listing_of_400_conflicts_reaches_matrix_as_several_events_within_the_limit(many_conflicts, clock,
                                                                                            tmp_path):
    parts = make_parts(copy_of(many_conflicts, tmp_path), clock, **settings())
    row = listing(parts, MATRIX_WATCH, "matrix:@alice:localhost")
    expected = REF.findall(json.loads(row.payload)["text"])
    assert len(set(expected)) >= 400
    homeserver = Homeserver()

    await Delivery(parts, [homeserver]).run_once(homeserver)

    assert len(homeserver.events) > 1
    assert all(len(json.dumps(e, ensure_ascii=False).encode()) + 1024 <= 65_536 for e in homeserver.events)
    body = "\n".join(e["body"] for e in homeserver.events)
    html = "\n".join(e["formatted_body"] for e in homeserver.events)
    assert REF.findall(body) == expected and REF.findall(html) == expected  # all there, once, in order
    assert all(e["msgtype"] == "m.notice" for e in homeserver.events)
    with parts.db.session() as s:
        assert s.get(OutboxRow, row.id).status == "sent"
    parts.db.dispose()


async def test_a_page_that_failed_is_sent_again_without_repeating_the_pages_before_it(sqlite_url, clock, tmp_path):
    parts = make_parts(sqlite_url, clock, **settings())
    overlapping_ops(parts, tmp_path, 12, AGENCIES)
    row = listing(parts, MATRIX_WATCH, "matrix:@alice:localhost")
    expected = REF.findall(json.loads(row.payload)["text"])
    homeserver = Homeserver()
    homeserver.limits = MessageLimits(max_bytes=4000)  # an adapter may say what it takes
    homeserver.fail_on = {2}  # the homeserver drops out while the second page is sent
    delivery = Delivery(parts, [homeserver])

    await delivery.run_once(homeserver)
    assert len(homeserver.events) == 1 and len(expected) > 50
    clock.advance(minutes=1)
    await delivery.run_once(homeserver)

    body = "\n".join(e["body"] for e in homeserver.events)
    assert len(homeserver.events) > 2 and REF.findall(body) == expected  # the first page was not posted twice
    with parts.db.session() as s:
        done = s.get(OutboxRow, row.id)
        assert done.status == "sent" and done.remote_id == "$event1"  # replies and edits go to the first page
    parts.db.dispose()


async def test_a_listing_of_400_conflicts_reaches_slack_as_several_messages_within_the_limit(many_conflicts, clock,
                                                                                           tmp_path, slack_api):
    parts = make_parts(copy_of(many_conflicts, tmp_path), clock, **settings(slack_api.base_url))
    row = listing(parts, SLACK_WATCH, "slack:UALICE")
    expected = REF.findall(json.loads(row.payload)["text"])
    assert len(set(expected)) >= 400
    adapter = SlackAdapter(parts, parts.settings.slack)

    await Delivery(parts, [adapter]).run_once(adapter)

    posts = slack_api.calls_to("chat.postMessage") + slack_api.calls_to("chat.postEphemeral")
    assert len(posts) > 1 and all(c.status == 200 for c in posts)
    posts.sort(key=lambda c: c.time)
    for c in posts:
        assert len(c.params["text"]) <= 40_000 and len(c.params.get("blocks") or []) <= 50
    texts = "\n".join(c.params["text"] for c in posts)
    blocks = "\n".join(b["text"]["text"] for c in posts for b in c.params["blocks"] if b.get("text"))
    assert REF.findall(texts) == expected and REF.findall(blocks) == expected
    parts.db.dispose()


async def test_an_alert_with_more_blocks_than_slack_takes_keeps_every_conflict_and_button(sqlite_url, clock,
                                                                                         tmp_path, slack_api):
    parts = make_parts(sqlite_url, clock, **settings(slack_api.base_url))
    start = overlapping_ops(parts, tmp_path, 45, ["USCG"])  # one agency: no conflicts among them
    ConsoleUser(parts, "LALB", "carl", "CBP").say(f'!op log boarding at=33.74,-118.27 start={start} end=2h')
    with parts.db.session() as s:
        (alert,) = s.exec(select(OutboxRow).where(OutboxRow.room == SLACK_WATCH, OutboxRow.kind == "alert")).all()
    refs = sorted(set(REF.findall(json.loads(alert.payload)["text"])), key=lambda r: int(r[3:]))
    assert len(refs) == 45 and len(json.loads(alert.payload)["blocks"]) > 50
    adapter = SlackAdapter(parts, parts.settings.slack)

    await Delivery(parts, [adapter]).run_once(adapter)

    posts = sorted(slack_api.calls_to("chat.postMessage"), key=lambda c: c.time)
    assert len(posts) > 1 and all(len(c.params["blocks"]) <= 50 for c in posts)
    sections = [b["text"]["text"] for c in posts for b in c.params["blocks"] if b["type"] == "section"]
    shown = [r for r in REF.findall("\n".join(sections))]
    assert sorted(set(shown), key=lambda r: int(r[3:])) == refs
    buttons = [el["action_id"] for c in posts for b in c.params["blocks"] if b["type"] == "actions"
               for el in b["elements"]]
    assert {f"ack:{r}" for r in refs} <= set(buttons)  # every conflict can still be acknowledged from Slack
    assert not any("more in the full listing" in s for s in sections)
    parts.db.dispose()


@pytest.mark.parametrize("kind", ["alert", "edit"])
def test_pages_are_cut_at_line_boundaries_and_a_giant_line_inside(kind):
    from watchfloor.bot.adapter import MessageLimits
    from watchfloor.bot.paging import pages

    lines = [f"<b>CF-{i}</b> overlap &amp; more" for i in range(300)] + ["x" * 5000]
    payload = {"text": "ignored", "html": "<br>\n".join(lines), "blocks": [], "image": {"data_b64": ""}}
    out = pages(kind, payload, MessageLimits(max_bytes=2000))
    assert len(out) > 3 and "image" in out[-1] and all("image" not in p for p in out[:-1])
    rebuilt = "<br>\n".join(p["html"] for p in out)
    assert REF.findall(rebuilt) == [f"CF-{i}" for i in range(300)]
    assert rebuilt.replace("<br>\n", "").replace("\n", "") == "".join(lines)  # nothing lost, nothing added
    for p in out:
        size = len(json.dumps(p["text"])) + len(json.dumps(p["html"]))
        assert (2 * size if kind == "edit" else size) <= 2000
        assert not re.search(r"<[^>]*$|&[a-z]*$", p["html"])  # never cut inside a tag or an entity


def test_a_picture_posted_apart_is_the_last_page_after_all_the_text():
    """Where the picture is a call of its own (Slack, Matrix), it is one more page: recorded after the text and
    looked up like any page (tests/test_exactly_once.py); its page holds the picture alone, nothing of the text."""
    from watchfloor.bot.adapter import MessageLimits
    from watchfloor.bot.paging import PICTURE, pages

    image = {"filename": "lalb-timeline.png", "data_b64": "iVBORw0K"}
    short = {"text": "Morning briefing", "html": "<b>Morning briefing</b>", "image": image, "outbox_id": 7,
             "conflict_update": {"code": "CF-1"}}
    text, picture = pages("briefing", short, MessageLimits(max_bytes=30_000), picture_apart=True)
    assert (text["text"], text["page"], text["conflict_update"]) == ("Morning briefing", 1, {"code": "CF-1"})
    assert "image" not in text
    assert picture == {"image": image, "outbox_id": 7, PICTURE: True, "page": 2, "pages": 2}
    assert short["image"] is image and "page" not in short  # the row's payload is left as it was

    long = {**short, "html": "<br>\n".join(f"line {i} " + "x" * 80 for i in range(100))}
    out = pages("briefing", long, MessageLimits(max_bytes=2000), picture_apart=True)
    assert len(out) > 3 and [p["page"] for p in out] == list(range(1, len(out) + 1))
    assert [bool(p.get(PICTURE)) for p in out] == [False] * (len(out) - 1) + [True]
    assert all("image" not in p for p in out[:-1]) and {p["pages"] for p in out} == {len(out)}
    # Not apart (an adapter posting text and picture in one call, as e-mail does): as before.
    assert pages("briefing", short, MessageLimits(max_bytes=30_000)) == [short]
