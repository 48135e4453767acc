"""What is kept only for a while (`[retention] days`): sent messages and the ids of handled messages are pruned by
a scheduled job; pending messages, the audit trail and what recent messages need for edits are kept."""
from __future__ import annotations

import pytest
from sqlmodel import func, select

from watchfloor.bot.delivery import Delivery
from watchfloor.bot.bridge import Bridge
from watchfloor.bot.duties import Duties
from watchfloor.bot.scheduler import JobScheduler
from watchfloor.commands.message import ChatMessage
from watchfloor.config import ConfigError, load_settings
from watchfloor.storage import outbox
from watchfloor.storage.tables import AuditRow, HandledEventRow, OutboxRow
from tests.helpers import ConsoleUser, make_parts

MATRIX_JOINT, SLACK_JOINT = "matrix:!joint:localhost", "slack:C0JOINT"
SETTINGS = dict(zone=[{"code": "LALB", "joint_rooms": [MATRIX_JOINT, SLACK_JOINT]}], retention={"days": 30})


class Slack:
    """The Slack side at the adapter boundary: records what it is asked to post or change."""

    platform = "slack"

    def __init__(self):
        self.calls: list[tuple[str, str | None, str]] = []  # (kind, target_id, text)

    async def start(self, on_message):
        pass

    async def stop(self):
        pass

    async def send(self, room, kind, payload, *, target_id=None, reply_to_remote=None):
        self.calls.append((kind, target_id, payload.get("text")))
        return f"1764600000.{len(self.calls):06d}"

    async def healthy(self):
        return True


def said(text: str, event_id: str, **extra) -> ChatMessage:
    return ChatMessage(platform="matrix", room=MATRIX_JOINT, sender="matrix:@pat:localhost", text=text,
                       event_id=event_id, sender_name="Pat", extra=extra)


def count(parts, table, *where) -> int:
    with parts.db.session() as s:
        return s.exec(select(func.count()).select_from(table).where(*where)).one()


async def test_old_messages_and_handled_ids_are_pruned_recent_ones_and_the_audit_kept(db_url, clock):
    parts = make_parts(db_url, clock, **SETTINGS)
    bridge, slack = Bridge(parts), Slack()
    delivery = Delivery(parts, [slack])
    hank = ConsoleUser(parts, "LALB", "hank", "CBP")

    # Two months ago: a command (audit, its console reply), a relayed message that went out, one that never did.
    hank.say("!op log patrol at=33.74,-118.27 start=+1h end=2h")
    bridge.relay(said("old news", "$old"))
    await delivery.run_once(slack)
    with parts.db.session() as s:
        stuck = outbox.enqueue(s, room="matrix:!gone:localhost", kind="alert", payload={"text": "still waiting"},
                               now=clock()).id
    audit = count(parts, AuditRow)
    clock.advance(days=60)

    # Last week: another relayed message, sent.
    bridge.relay(said("fresh news", "$young"))
    await delivery.run_once(slack)
    clock.advance(days=7)
    before = count(parts, HandledEventRow)

    sched = JobScheduler(parts, clock)
    duties = Duties(parts.db)
    sched.attach(duties)
    sched._retention_job()  # a follower does nothing
    assert count(parts, HandledEventRow) == before
    await duties.round()
    assert sched.is_leader
    sched._retention_job()

    with parts.db.session() as s:
        left = s.exec(select(OutboxRow).order_by(OutboxRow.id)).all()
    texts = [r.payload for r in left]
    assert not any("old news" in t for t in texts)  # the old relayed copy and the console reply are gone
    assert any("fresh news" in t for t in texts)
    assert stuck in [r.id for r in left if r.status == "pending"]  # what never went out is never pruned
    assert count(parts, HandledEventRow) == 1  # the young message's id only
    assert count(parts, AuditRow) == audit  # the audit trail is never pruned

    # The id map still knows where the recent message went: its edit changes the copy in place.
    bridge.relay(said("fresh news, corrected", "$young-edit", edit_of="$young"))
    await delivery.run_once(slack)
    kind, target, text = slack.calls[-1]
    assert (kind, target) == ("edit", "1764600000.000002") and "fresh news, corrected" in text
    parts.db.dispose()


async def test_the_scheduler_runs_the_pruning_job(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock, **SETTINGS)
    sched = JobScheduler(parts, clock)
    sched.start()
    try:
        job = sched._scheduler.get_job("retention")
        assert job is not None and job.func == sched._retention_job
    finally:
        sched.shutdown()
        parts.db.dispose()


def test_retention_days_must_be_a_positive_number():
    with pytest.raises(ConfigError) as e:
        load_settings(retention={"days": 0})
    assert e.value.problems[0].startswith("retention.days:")
    assert load_settings().retention.days == 30
