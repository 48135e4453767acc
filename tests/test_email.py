"""E-mail for partners who do not live in chat (the contract's "E-mail"; issue 26): briefings, handover digests and
alerts through the outbox to a real SMTP server on loopback (aiosmtpd with STARTTLS and a login), each address
given only what its agency may read, exactly once across replicas and restarts."""
from __future__ import annotations

import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor
from sqlmodel import select

from tests.fixtures.smtp import PASSWORD, SENDER, USER, smtp_cert, smtp_server  # noqa: F401  (fixtures)
from tests.helpers import ConsoleUser, make_parts
from watchfloor.bot import metrics
from watchfloor.bot.delivery import Delivery
from watchfloor.bot.email.adapter import EmailAdapter
from watchfloor.bot.email.message import message_id
from watchfloor.bot.scheduler import JobScheduler
from watchfloor.commands.briefing import build_briefing
from watchfloor.ioc.markings import Marking
from watchfloor.ioc.zones import get_zone
from watchfloor.storage import outbox
from watchfloor.storage.tables import OutboxRow

CBP, PORTPD, PORTPD_NIGHT, HARBOR = "desk@cbp.example", "ops@portpd.example", "night@portpd.example", \
    "harbor@port.example"
ALL = ["UNCLASS", "FOUO", "LES"]
LES_WORDS = re.compile(r"\bLES\b|LAW ENFORCEMENT|SHADOW RUNNER|informant|OP-1\b")


def config(smtp, **zone) -> dict:
    return dict(
        email=smtp.settings(),
        zone=[{"code": "LALB", "joint_rooms": ["slack:CJOINT"], "watch_rooms": ["slack:CWATCH"], **zone}],
        room=[{"id": "slack:CWATCH", "clearance": ["UNCLASS", "FOUO"]}],
        agency=[{"code": "CBP", "clearance": ALL, "email": [CBP], "email_alerts": True},
                {"code": "PORTPD", "clearance": ["UNCLASS", "FOUO"], "email": [PORTPD, PORTPD_NIGHT]},
                {"code": "HARBOR", "clearance": ["UNCLASS"], "email": [HARBOR], "email_alerts": True},
                {"code": "USCG", "clearance": ALL}],
    )


def the_day(parts) -> None:
    """An LES surveillance (CBP), a FOUO escort (PORTPD) and an UNCLASS patrol (USCG) clashing with the escort."""
    ConsoleUser(parts, "LALB", "alice", "CBP").say(
        '!op log surveillance vessel="SHADOW RUNNER" at=33.74,-118.27 start=2026-12-01T09:00 end=3h mark=LES '
        'note="informant ALPHA"')
    ConsoleUser(parts, "LALB", "pat", "PORTPD").say('!op log escort at=33.70,-118.20 start=2026-12-01T10:00 end=2h '
                                                    'mark=FOUO')
    ConsoleUser(parts, "LALB", "bob", "USCG").say("!op log patrol at=33.70,-118.20 start=2026-12-01T11:00 end=2h")


async def deliver(parts, adapter, passes: int = 6) -> Delivery:
    """Send what is due through the real delivery worker, pass after pass."""
    worker = Delivery(parts, [adapter], send_timeout=10)
    for _ in range(passes):
        if await worker.run_once(adapter) == 0:
            break
    return worker


def every_part(received) -> str:
    """The whole message as a reader's client could show it: headers and every part decoded (the picture's bytes
    too, as text, so a name drawn into it would show)."""
    msg = received.message
    out = [str(k) + ": " + str(v) for k, v in msg.items()]
    for part in msg.walk():
        if part.is_multipart():
            continue
        out += [str(k) + ": " + str(v) for k, v in part.items()]
        content = part.get_content()
        out.append(content if isinstance(content, str) else content.decode("latin-1"))
    return "\n".join(out)


def rows(parts, room_prefix: str = "email:") -> list[OutboxRow]:
    with parts.db.session() as s:
        return list(s.exec(select(OutboxRow).where(OutboxRow.room.startswith(room_prefix)).order_by(OutboxRow.id)))


def refused_count(code: str) -> float:
    return metrics.EMAIL_REFUSED.labels(code=code)._value.get()


# --- the briefing ----------------------------------------------------------------------------------------------

async def test_briefing_goes_to_each_address_as_html_with_a_text_part_and_the_picture_inline(sqlite_url, clock,
                                                                                          smtp_server):
    parts = make_parts(sqlite_url, clock, **config(smtp_server))
    the_day(parts)
    # 2 chat rooms and the console, and the 4 agency addresses of the zone
    assert JobScheduler(parts, clock).post_briefing("LALB", clock.now) == 7
    await deliver(parts, EmailAdapter(parts.settings.email))

    got = smtp_server.wait_for(4)
    assert sorted(m.rcpt_tos[0] for m in got) == sorted([CBP, PORTPD, PORTPD_NIGHT, HARBOR])  # one each
    for received in got:
        assert received.tls and received.login == USER  # STARTTLS, then the relay's login
        msg = received.message
        assert msg["From"] == SENDER and msg["To"] == received.rcpt_tos[0]
        assert msg.get_content_type() == "multipart/alternative"
        text, related = msg.get_payload()
        assert text.get_content_type() == "text/plain" and related.get_content_type() == "multipart/related"
        html, picture = related.get_payload()
        assert html.get_content_type() == "text/html" and picture.get_content_type() == "image/png"
        cid = picture["Content-ID"].strip("<>")
        assert f'src="cid:{cid}"' in html.get_content()  # the picture shown inline, where the page names it
        assert picture.get_content()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "Morning briefing" in text.get_content() and "Morning briefing" in html.get_content()
    with parts.db.session() as s:
        sent = {r.room: r for r in s.exec(select(OutboxRow).where(OutboxRow.room.startswith("email:")))}
    for received in got:
        row = sent["email:" + received.rcpt_tos[0]]
        assert row.status == outbox.SENT and received.message["Message-ID"] == row.remote_id \
            == message_id(row.id, clock.now, SENDER)  # one id per outbox row: a retry is recognisable


async def test_les_never_reaches_an_address_whose_agency_is_not_cleared(sqlite_url, clock, smtp_server):
    parts = make_parts(sqlite_url, clock, **config(smtp_server))
    the_day(parts)
    JobScheduler(parts, clock).post_briefing("LALB", clock.now)
    await deliver(parts, EmailAdapter(parts.settings.email))
    got = {m.rcpt_tos[0]: m for m in smtp_server.wait_for(4)}

    cleared = every_part(got[CBP])
    assert "SHADOW RUNNER" in cleared and "OP-1" in cleared and "[LES]" in cleared
    for address in (PORTPD, PORTPD_NIGHT, HARBOR):
        whole = every_part(got[address])
        assert not LES_WORDS.search(whole), (address, LES_WORDS.search(whole))
        assert "withheld" not in whole  # not even a stub saying something LES exists
    assert "OP-2" in every_part(got[PORTPD]) and "OP-2" not in every_part(got[HARBOR])  # FOUO: PORTPD only

    # The picture is drawn from what the address's agency may see: the same drawing as from PORTPD's clearance.
    from watchfloor.bot.timeline import timeline

    def drawn(clearance) -> bytes:
        with parts.db.session() as s:
            return timeline(build_briefing(s, parts.directory, get_zone("LALB"), clock.now, clearance,
                                           show_withheld=False)).png

    def png(address) -> bytes:
        return got[address].message.get_payload()[1].get_payload()[1].get_content()

    assert png(PORTPD) == drawn(frozenset({Marking.UNCLASS, Marking.FOUO})) != png(CBP)
    assert png(CBP) == drawn(frozenset(Marking))
    assert png(HARBOR) == drawn(frozenset({Marking.UNCLASS}))


async def test_subject_and_banner_carry_the_highest_marking_inside(sqlite_url, clock, smtp_server):
    parts = make_parts(sqlite_url, clock, **config(smtp_server))
    the_day(parts)
    JobScheduler(parts, clock).post_briefing("LALB", clock.now)
    await deliver(parts, EmailAdapter(parts.settings.email))
    got = {m.rcpt_tos[0]: m.message for m in smtp_server.wait_for(4)}

    assert got[CBP]["Subject"] == "[LES] LALB briefing Tue 01 Dec"
    assert got[PORTPD]["Subject"] == "[FOUO] LALB briefing Tue 01 Dec"
    assert got[HARBOR]["Subject"] == "[UNCLASS] LALB briefing Tue 01 Dec"
    for address, banner in ((CBP, "UNCLASSIFIED//LAW ENFORCEMENT SENSITIVE"),
                            (PORTPD, "UNCLASSIFIED//FOR OFFICIAL USE ONLY"), (HARBOR, "UNCLASSIFIED")):
        text = got[address].get_body(("plain",)).get_content()
        html = got[address].get_body(("html",)).get_content()
        assert text.splitlines()[0] == banner and text.rstrip().splitlines()[-1] == banner  # top and bottom
        assert f'role="banner"' in html and f">{banner}</div>" in html


def test_an_email_holding_anything_above_its_clearance_is_never_stored(sqlite_url, clock, smtp_server, caplog):
    """The last check before the outbox (templates/mail.py): should a caller hand an address data built for a
    higher clearance, or with "withheld" stubs, that e-mail is not made at all (and the error is logged)."""
    from watchfloor.commands.posting import post

    parts = make_parts(sqlite_url, clock, **config(smtp_server))
    the_day(parts)
    [room] = [r for r in parts.directory.email_rooms("LALB") if r.id == f"email:{PORTPD}"]
    zone = get_zone("LALB")
    with parts.db.session() as s:
        for wrong in (frozenset(Marking), None):  # everything shown; or PORTPD's clearance with LES stubs listed
            data = (lambda c, w=wrong: build_briefing(s, parts.directory, zone, clock.now, w)) if wrong else \
                (lambda c: build_briefing(s, parts.directory, zone, clock.now, c, show_withheld=True))
            assert post(s, room, "briefing", "briefing.j2", data, clock.now) is None
        assert post(s, room, "briefing", "briefing.j2",
                    lambda c: build_briefing(s, parts.directory, zone, clock.now, c, show_withheld=False),
                    clock.now) is not None  # what it may read goes
    assert [r.room for r in rows(parts)] == [f"email:{PORTPD}"]
    assert any("not e-mailed to email:ops@portpd.example: OP-1" in r.getMessage() for r in caplog.records)


async def test_handover_digest_goes_to_the_addresses_too(sqlite_url, clock, smtp_server):
    parts = make_parts(sqlite_url, clock, **config(smtp_server, handover_times=["07:00", "19:00"]))
    the_day(parts)
    sched = JobScheduler(parts, clock)
    assert sched.post_handover("LALB", "07:00") == 2 + 4  # the watch room and the console, and the addresses
    assert sched.post_handover("LALB", "07:00") == 0  # once per address and handover time
    await deliver(parts, EmailAdapter(parts.settings.email))
    got = {m.rcpt_tos[0]: m.message for m in smtp_server.wait_for(4)}
    assert got[PORTPD]["Subject"] == "[FOUO] LALB handover Tue 01 Dec 07:00 PST"
    assert "Handover" in got[PORTPD].get_body(("plain",)).get_content()
    assert not LES_WORDS.search(every_part(smtp_server.to(PORTPD)[0]))


# --- exactly once ------------------------------------------------------------------------------------------

async def test_two_replicas_on_postgres_racing_send_each_address_its_briefing_once(pg_url, clock, smtp_server):
    """Two replicas, each with its scheduler firing the briefing many times at once and its delivery running,
    as `watchfloor run` wires them: the dedupe key stores one row per address, the `delivery:email` duty lets one
    replica send."""
    from watchfloor.bot.duties import Duties
    from watchfloor.bot.runner import Service

    replicas = []
    for _ in range(2):
        parts = make_parts(pg_url, clock, **config(smtp_server))
        duties = Duties(parts.db, retry_seconds=0.2)
        adapter = EmailAdapter(parts.settings.email)
        service = Service(parts, [adapter], duties=duties, delivery=Delivery(parts, [adapter], poll_interval=0.05))
        replicas.append((parts, JobScheduler(parts, clock), service, duties))
    the_day(replicas[0][0])
    for _parts, _sched, service, _duties in replicas:
        await service.start()
    try:
        assert sum(d.held("delivery:email") for *_, d in replicas) == 1

        def fire(i: int) -> int:
            return replicas[i % 2][1].post_briefing("LALB", clock.now)

        with ThreadPoolExecutor(max_workers=8) as pool:
            posted = await asyncio.to_thread(lambda: list(pool.map(fire, range(40))))
        assert sum(posted) == 7  # 3 chat rooms and 4 addresses, whoever fired first
        await asyncio.to_thread(smtp_server.wait_for, 4)
        await asyncio.sleep(1.0)  # time for a second copy to arrive, were there one
    finally:
        for _parts, _sched, service, _duties in replicas:
            await service.stop()
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == sorted([CBP, PORTPD, PORTPD_NIGHT, HARBOR])
    assert all(r.status == outbox.SENT for r in rows(replicas[0][0]))
    for parts, *_ in replicas:
        parts.db.dispose()


async def test_a_relay_that_is_down_delays_mail_and_it_arrives_once_when_back(sqlite_url, clock, smtp_server):
    parts = make_parts(sqlite_url, clock, **config(smtp_server))
    the_day(parts)
    smtp_server.stop()
    JobScheduler(parts, clock).post_briefing("LALB", clock.now)
    await deliver(parts, EmailAdapter(parts.settings.email))
    waiting = rows(parts)
    assert len(waiting) == 4 and all(r.status == outbox.PENDING and r.attempts >= 1 for r in waiting)
    assert all("cannot reach the relay" in r.last_error for r in waiting)
    assert smtp_server.messages == []

    # The relay is back; the bot was restarted meanwhile (a new delivery worker): every address once.
    smtp_server.start()
    clock.advance(minutes=1)  # past the backoff
    await deliver(parts, EmailAdapter(parts.settings.email))
    clock.advance(minutes=5)
    await deliver(parts, EmailAdapter(parts.settings.email))
    assert sorted(m.rcpt_tos[0] for m in smtp_server.wait_for(4)) == sorted([CBP, PORTPD, PORTPD_NIGHT, HARBOR])
    assert all(r.status == outbox.SENT for r in rows(parts))
    await asyncio.sleep(0.2)
    assert len(smtp_server.messages) == 4


async def test_a_5xx_refusal_is_counted_and_not_retried_a_4xx_is_retried(sqlite_url, clock, smtp_server):
    parts = make_parts(sqlite_url, clock, **config(smtp_server))
    the_day(parts)
    smtp_server.refuse(PORTPD_NIGHT, 550, "5.1.1 <night@portpd.example>: mailbox unavailable")
    smtp_server.refuse(HARBOR, 451, "4.3.0 try again later", times=1)
    before = refused_count("550")
    posted_at = clock.now
    JobScheduler(parts, clock).post_briefing("LALB", clock.now)
    adapter = EmailAdapter(parts.settings.email)
    await deliver(parts, adapter)
    for _ in range(3):  # later passes, past any backoff
        clock.advance(minutes=2)
        await deliver(parts, adapter)

    by_room = {r.room: r for r in rows(parts)}
    night, harbor = by_room[f"email:{PORTPD_NIGHT}"], by_room[f"email:{HARBOR}"]
    assert night.status == outbox.DEAD and "550" in night.last_error
    assert smtp_server.answers_to(PORTPD_NIGHT) == ["550 5.1.1 <night@portpd.example>: mailbox unavailable"]  # once
    assert refused_count("550") == before + 1
    assert harbor.status == outbox.SENT and harbor.attempts == 1
    assert smtp_server.answers_to(HARBOR) == ["451 4.3.0 try again later", "250 OK"]
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == sorted([CBP, PORTPD, HARBOR])
    # The zone's watch is told in chat, once: nobody reads the bounce otherwise.
    [told] = [json.loads(r.payload) for r in rows(parts, "slack:CWATCH") if r.kind == "notice"]
    assert told["delivery_failure"] and f"email:{PORTPD_NIGHT}" in told["text"] and "550" in told["text"]
    assert "check the address with its agency" in told["text"]
    # The retried message is the same message: the Message-ID of its outbox row.
    assert smtp_server.to(HARBOR)[0].message["Message-ID"] == harbor.remote_id == message_id(harbor.id, posted_at,
                                                                                             SENDER)


async def test_a_message_whose_answer_was_lost_is_sent_again_as_the_same_message(sqlite_url, clock, smtp_server):
    """SMTP cannot be asked what it took: after a lost answer the row is sent again, and the copy is recognisable
    (the same Message-ID, the same Date), so the recipient's server or client can drop it."""
    parts = make_parts(sqlite_url, clock, **config(smtp_server))
    the_day(parts)
    posted_at = clock.now
    JobScheduler(parts, clock).post_briefing("LALB", clock.now)
    smtp_server.lose_answers(1)
    adapter = EmailAdapter(parts.settings.email)
    await deliver(parts, adapter)
    clock.advance(minutes=1)
    await deliver(parts, adapter)

    assert len(smtp_server.messages) == 5  # one address twice, the others once each
    [twice] = [a for a in (CBP, PORTPD, PORTPD_NIGHT, HARBOR) if len(smtp_server.to(a)) == 2]
    [row] = [r for r in rows(parts) if r.room == f"email:{twice}"]
    copies = [m.message for m in smtp_server.to(twice)]
    assert copies[0]["Message-ID"] == copies[1]["Message-ID"] == row.remote_id == message_id(row.id, posted_at,
                                                                                              SENDER)
    assert copies[0]["Date"] == copies[1]["Date"] and row.attempts == 1
    assert [r.status for r in rows(parts)] == [outbox.SENT] * 4


# --- configuration and the command line --------------------------------------------------------------------

BAD_EMAIL_CONFIG = """
[email]
smtp = "smtp://wf:hunter2@relay.ioc.example:587"
sender = "watchfloor"

[[zone]]
code = "LALB"
watch_email = ["lalb-watch.ioc.example"]

[[zone]]
code = "NY"

[[agency]]
code = "PORTPD"
email = ["ops@portpd.example", "ops.portpd.example"]

[[agency]]
code = "CBP"
email = ["OPS@portpd.example"]
email_zones = ["LALB", "HON"]
"""


def test_config_check_names_each_email_problem_in_one_line(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "wf.toml"
    path.write_text(BAD_EMAIL_CONFIG)
    out = subprocess.run([sys.executable, "-m", "watchfloor.bot.cli", "config", "check", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stderr == ""
    lines = out.stdout.strip().splitlines()
    assert sorted(lines[:-1]) == sorted([
        "email.smtp: not an SMTP URL (smtp://host:587 for STARTTLS, smtps://host:465 for TLS; the user and password "
        "go in WATCHFLOOR_EMAIL__USER and WATCHFLOOR_EMAIL__PASSWORD)",
        "email.sender: 'watchfloor' is not an e-mail address: no '@' (e.g. \"watchfloor <wf@ioc.example>\")",
        "zone[0].watch_email[0]: 'lalb-watch.ioc.example' is not an e-mail address: no '@' (name@domain)",
        "agency[0].email[1]: 'ops.portpd.example' is not an e-mail address: no '@' (name@domain)",
        "agency[0].email_zones: missing (the config has 2 zones: say whose briefings go to these addresses, "
        "e.g. email_zones = [\"LALB\"])",
        "agency[1].email[0]: 'OPS@portpd.example' is also an address of PORTPD; an address belongs to one agency",
        "agency[1].email_zones[1]: zone HON is not configured ([[zone]])",
    ])
    assert lines[-1] == f"{path}: 7 problems"
    assert "hunter2" not in out.stdout  # a password written into the URL is not repeated


def _cli(*args, env=None, timeout=120):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "watchfloor.bot.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _config_file(tmp_path, smtp) -> str:
    """The settings of `config` as a file, the relay's password left to the environment as the README says."""
    email = smtp.settings()
    lines = ["[email]", f'smtp = "{email["smtp"]}"', f'sender = "{email["sender"]}"', f'user = "{email["user"]}"',
             f'ca_file = "{email["ca_file"]}"', "", "[[zone]]", 'code = "LALB"', 'watch_rooms = ["slack:CWATCH"]', ""]
    for a in config(smtp)["agency"]:
        lines += ["[[agency]]", f'code = "{a["code"]}"', f"clearance = {a['clearance']!r}".replace("'", '"'),
                  f"email = {a.get('email', [])!r}".replace("'", '"'), ""]
    path = tmp_path / "wf.toml"
    path.write_text("\n".join(lines))
    return str(path)


def test_brief_email_sends_one_briefing_now_as_the_address_s_agency_reads_it(sqlite_url, tmp_path, smtp_server):
    from datetime import datetime

    parts = make_parts(sqlite_url, None, **config(smtp_server))
    ConsoleUser(parts, "LALB", "alice", "CBP").say(
        '!op log surveillance vessel="SHADOW RUNNER" at=33.74,-118.27 start=+1h end=2h mark=LES')
    ConsoleUser(parts, "LALB", "pat", "PORTPD").say("!op log escort at=33.70,-118.20 start=+1h end=2h mark=FOUO")
    parts.db.dispose()
    path = _config_file(tmp_path, smtp_server)

    out = _cli("brief", "--zone", "LALB", "--email", PORTPD, "--config", path, "--db", sqlite_url,
               env={"WATCHFLOOR_EMAIL__PASSWORD": PASSWORD})
    day = datetime.now(get_zone("LALB").tz).strftime("%a %d %b")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"sent to {PORTPD} (as PORTPD reads it): [FOUO] LALB briefing {day}"
    [got] = smtp_server.wait_for(1)
    assert got.rcpt_tos == [PORTPD] and got.login == USER and got.tls
    assert got.message.get_payload()[1].get_payload()[1].get_content_type() == "image/png"
    assert "OP-2" in every_part(got) and not LES_WORDS.search(every_part(got).replace("OP-1", "")) \
        and "SHADOW RUNNER" not in every_part(got)

    # An address of no agency: what UNCLASS may read.
    out = _cli("brief", "--zone", "LALB", "--email", "someone@else.example", "--config", path, "--db", sqlite_url,
               env={"WATCHFLOOR_EMAIL__PASSWORD": PASSWORD})
    assert out.stdout.strip() == f"sent to someone@else.example (at UNCLASS: the address is in no agency): " \
                                 f"[UNCLASS] LALB briefing {day}"
    assert "OP-2" not in every_part(smtp_server.wait_for(2)[1])


def test_brief_email_says_in_one_line_what_went_wrong(sqlite_url, tmp_path, smtp_server):
    path = _config_file(tmp_path, smtp_server)
    env = {"WATCHFLOOR_EMAIL__PASSWORD": PASSWORD}
    out = _cli("brief", "--zone", "LALB", "--email", "ops.portpd.example", "--config", path, "--db", sqlite_url,
               env=env)
    assert (out.returncode, out.stderr.strip()) == (2, "email: 'ops.portpd.example' is not an e-mail address: no "
                                                       "'@' (name@domain)")
    smtp_server.refuse(HARBOR, 550, "5.1.1 mailbox unavailable")
    out = _cli("brief", "--zone", "LALB", "--email", HARBOR, "--config", path, "--db", sqlite_url, env=env)
    assert (out.returncode, out.stderr.strip()) == (1, f"email: not sent to {HARBOR}: 550 5.1.1 mailbox unavailable")
    out = _cli("brief", "--zone", "LALB", "--email", PORTPD, "--config", path, "--db", sqlite_url,
               env={"WATCHFLOOR_EMAIL__PASSWORD": "wrong"})
    assert out.returncode == 1 and out.stderr.startswith(f"email: not sent to {PORTPD}: the relay refuses our login: 535")
    smtp_server.stop()
    out = _cli("brief", "--zone", "LALB", "--email", PORTPD, "--config", path, "--db", sqlite_url, env=env)
    assert out.returncode == 1 and out.stderr.startswith(f"email: not sent to {PORTPD}: cannot reach the relay")
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert smtp_server.messages == []
