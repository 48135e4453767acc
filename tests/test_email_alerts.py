"""Conflict alerts by e-mail (the contract's "E-mail"): to the agencies an alert involves that asked for them
(`email_alerts`), with their escalations, never replacing the chat alert; and to the zone's `watch_email` once
every chat platform of its watch rooms has been down for 5 minutes, once each. A real SMTP server on loopback, the
Slack Web API stand-in, and the hand-moved clock."""
from __future__ import annotations

import json

from sqlmodel import select

from tests.fixtures.slack_api import slack_api  # noqa: F401  (fixture)
from tests.fixtures.smtp import smtp_cert, smtp_server  # noqa: F401  (fixtures)
from tests.helpers import ConsoleUser, make_parts
from tests.test_email import CBP, config, deliver, every_part, rows
from watchfloor.bot.email.adapter import EmailAdapter
from watchfloor.bot.scheduler import JobScheduler
from watchfloor.commands.jobs import escalate_due
from watchfloor.storage import outbox
from watchfloor.storage.tables import OutboxRow

WATCH_EMAIL = "lalb-watch@ioc.example"


def say(parts, agency: str, text: str, user: str | None = None) -> str:
    return ConsoleUser(parts, "LALB", user or agency.lower(), agency).say(text)


def chat_alerts(parts, room: str = "slack:CWATCH") -> list[dict]:
    with parts.db.session() as s:
        return [json.loads(r.payload) for r in s.exec(select(OutboxRow).where(
            OutboxRow.room == room, OutboxRow.kind.in_(("alert", "escalation"))).order_by(OutboxRow.id))]


async def test_an_alert_goes_to_the_involved_agency_that_asked_and_to_no_other(sqlite_url, clock, smtp_server):
    parts = make_parts(sqlite_url, clock, **config(smtp_server))
    say(parts, "CBP", "!op log boarding at=33.74,-118.27 start=2026-12-01T09:00 end=2h")
    say(parts, "PORTPD", "!op log escort at=33.74,-118.27 start=2026-12-01T10:00 end=2h")  # CF-1: CBP and PORTPD
    await deliver(parts, EmailAdapter(parts.settings.email))

    # CBP asked for its alerts; PORTPD is involved but did not ask; HARBOR asked but is not involved.
    got = smtp_server.wait_for(1)
    assert [m.rcpt_tos for m in got] == [[CBP]]
    alert = got[0]
    msg = alert.message
    assert msg["Subject"] == "[UNCLASS] LALB alert: CF-1 overlap"
    text = msg.get_body(("plain",)).get_content()
    # What the chat alert says, and how to act in chat.
    [in_chat] = chat_alerts(parts)
    assert in_chat["text"] in text
    assert "!conflicts ack CF-1" in text and "!conflicts resolve CF-1 proceed|joint|delay|cancel" in text
    assert "!conflicts ack CF-1" in msg.get_body(("html",)).get_content()

    # Unacknowledged for 15 minutes: the escalation goes to the district, and by e-mail to CBP too.
    clock.advance(minutes=16)
    escalate_due(parts.engine)
    await deliver(parts, EmailAdapter(parts.settings.email))
    assert [m.rcpt_tos for m in smtp_server.wait_for(2)] == [[CBP], [CBP]]
    assert smtp_server.messages[1].message["Subject"] == "[UNCLASS] LALB escalated: CF-1 overlap not acknowledged"
    assert {r.room for r in rows(parts)} == {f"email:{CBP}"}  # nothing was ever stored for another address


async def test_an_les_conflict_is_not_mailed_to_an_involved_agency_not_cleared_for_it(sqlite_url, clock,
                                                                                      smtp_server):
    parts = make_parts(sqlite_url, clock, **config(smtp_server))
    say(parts, "CBP", '!op log surveillance vessel="SHADOW RUNNER" at=33.74,-118.27 start=2026-12-01T09:00 end=3h '
                      'mark=LES note="informant ALPHA"')
    say(parts, "HARBOR", "!op log inspection at=33.74,-118.27 start=2026-12-01T10:00 end=1h")  # CF-1, marked LES
    clock.advance(minutes=16)
    escalate_due(parts.engine)
    await deliver(parts, EmailAdapter(parts.settings.email))

    got = smtp_server.wait_for(2)
    assert [m.rcpt_tos for m in got] == [[CBP], [CBP]]  # the alert and its escalation; HARBOR (UNCLASS) nothing
    assert got[0].message["Subject"] == "[LES] LALB alert: CF-1 overlap"
    assert "SHADOW RUNNER" in every_part(got[0])
    assert {r.room for r in rows(parts)} == {f"email:{CBP}"}
    # The chat alert is still posted, as ever (the watch room shows the stub its clearance allows).
    assert [a["conflicts"] for a in chat_alerts(parts)][0] == []


async def test_watch_email_after_five_minutes_of_every_chat_platform_down_once_each(sqlite_url, clock, smtp_server,
                                                                                    slack_api):
    from tests.test_slack_adapter import slack_settings
    from watchfloor.bot.slack.adapter import SlackAdapter

    settings = config(smtp_server, watch_email=[WATCH_EMAIL])
    settings["slack"] = slack_settings(slack_api.base_url)["slack"]
    parts = make_parts(sqlite_url, clock, **settings)
    slack, mail = SlackAdapter(parts, parts.settings.slack), EmailAdapter(parts.settings.email)
    sched = JobScheduler(parts, clock)

    async def deliver_all():
        await deliver(parts, slack)
        await deliver(parts, mail)

    slack_api.down = True
    say(parts, "CBP", "!op log boarding at=33.74,-118.27 start=2026-12-01T09:00 end=2h")
    say(parts, "USCG", "!op log patrol at=33.74,-118.27 start=2026-12-01T10:00 end=2h")  # CF-1
    await deliver_all()  # Slack does not take it
    assert sched.watch_email() == 0
    clock.advance(minutes=4, seconds=59)
    await deliver_all()
    assert sched.watch_email() == 0  # down, but not yet for 5 minutes
    clock.advance(seconds=1)
    assert sched.watch_email() == 1
    assert sched.watch_email() == 0  # once
    await deliver_all()
    smtp_server.wait_for(2)  # CBP's own copy (it asked for its alerts) and the watch's
    [first] = smtp_server.to(WATCH_EMAIL)
    assert first.message["Subject"] == "[UNCLASS] LALB alert: CF-1 overlap"
    assert "!conflicts ack CF-1" in first.message.get_body(("plain",)).get_content()

    # Still down: a new alert goes at the next look, once.
    clock.advance(minutes=1)
    say(parts, "PORTPD", "!op log escort at=33.74,-118.27 start=2026-12-01T10:30 end=1h")  # CF-2, CF-3
    await deliver_all()
    assert sched.watch_email() == 1
    assert sched.watch_email() == 0
    await deliver_all()
    smtp_server.wait_for(4)
    assert [m.message["Subject"] for m in smtp_server.to(WATCH_EMAIL)][1] == \
        "[UNCLASS] LALB alert: 2 new conflicts (CF-2, CF-3)"

    # Slack is back: the alerts are posted there, and a new one is not e-mailed to the watch.
    slack_api.down = False
    clock.advance(minutes=2)
    await deliver_all()
    assert all(r.status == outbox.SENT for r in rows(parts, "slack:CWATCH"))
    say(parts, "HARBOR", "!op log inspection at=33.74,-118.27 start=2026-12-01T10:45 end=30m")
    assert sched.watch_email() == 0
    await deliver_all()
    assert len(smtp_server.to(WATCH_EMAIL)) == 2


async def test_no_watch_email_while_another_chat_platform_still_takes_the_zone_s_alerts(sqlite_url, clock,
                                                                                        smtp_server, slack_api,
                                                                                        synapse):
    """Slack is down for good, but the zone's Matrix watch room gets its alerts: the watch reads them there."""
    from tests.matrix_harness import make_world
    from tests.test_slack_adapter import slack_settings
    from watchfloor.bot.delivery import Delivery
    from watchfloor.bot.matrix.adapter import MatrixAdapter
    from watchfloor.bot.runner import Service
    from watchfloor.bot.slack.adapter import SlackAdapter

    world = make_world(synapse, joint=1)
    settings = dict(world.settings, email=smtp_server.settings(), slack=slack_settings(slack_api.base_url)["slack"])
    settings["zone"][0].update(watch_rooms=[f"matrix:{world.watch}", "slack:CWATCH"], watch_email=[WATCH_EMAIL])
    parts = make_parts(sqlite_url, clock, **settings)
    matrix = MatrixAdapter(parts, parts.settings.matrix, sync_timeout_ms=5000, retry_cap=1.0)
    service = Service(parts, [matrix], delivery=Delivery(parts, [matrix], poll_interval=0.1))
    slack = SlackAdapter(parts, parts.settings.slack)
    sched = JobScheduler(parts, clock)
    await service.start()
    try:
        slack_api.down = True
        say(parts, "CBP", "!op log boarding at=33.74,-118.27 start=2026-12-01T09:00 end=2h")
        say(parts, "USCG", "!op log patrol at=33.74,-118.27 start=2026-12-01T10:00 end=2h")  # CF-1
        service.delivery.wake()
        await deliver(parts, slack)

        def matrix_alert_sent() -> bool:
            return any(r.kind == "alert" and r.status == outbox.SENT for r in rows(parts, "matrix:"))

        from tests.test_slack_adapter import until

        await until(matrix_alert_sent, timeout=20, what="the alert in the Matrix watch room")
        clock.advance(minutes=6)
        await deliver(parts, slack)
        assert [r.status for r in rows(parts, "slack:CWATCH")] == [outbox.PENDING]  # Slack down for 6 minutes
        assert sched.watch_email() == 0
        assert not any(r.room == f"email:{WATCH_EMAIL}" for r in rows(parts))
    finally:
        await service.stop()
        parts.db.dispose()
