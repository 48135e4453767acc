"""A Slack command that cannot be stored because the database is unreachable: Slack already has its
acknowledgement and will not send it again, so the sender is told at once, through Slack alone (the command's
response_url, or an ephemeral message), to try again. Real PostgreSQL behind a TCP proxy the test cuts."""
from __future__ import annotations

import asyncio

from sqlalchemy import event

from tests.fixtures.slack_api import apost_signed, block_action_body, event_body
from tests.fixtures.tcp_proxy import tcp_proxy
from tests.test_slack_adapter import ALICE, JOINT, LOG_OP, SAM, SECRET, WATCH, count, deliver, message_event, \
    running, settle, slack_settings, slash, until
from watchfloor.storage.tables import OperationRow

PG = ("127.0.0.1", 5432)


def told_to_try_again(text: str) -> bool:
    return "could not be stored" in text and "try again" in text and "\n" not in text \
        and "Traceback" not in text and "psycopg" not in text


async def test_a_command_the_database_cannot_take_is_answered_try_again(pg_url, clock, slack_api):
    with tcp_proxy(PG) as proxy:
        async with running(proxy.url_for(pg_url), clock, slack_api) as (parts, adapter):
            await slash(adapter, slack_api, "", command="/watchfloor", trigger="t0", name="before")
            await settle(adapter, handled=1)

            proxy.cut()
            await slash(adapter, slack_api, LOG_OP, trigger="t1", name="down")
            await apost_signed(adapter.url, event_body(message_event("!op " + LOG_OP, ts="1764600001.000100",
                                                                     thread_ts="1764600000.000100"), "Ev1"), SECRET)
            press = block_action_body(action_id="ack:CF-1", value="CF-1", user_id=SAM, channel_id=WATCH,
                                      message_ts="1764600002.000100", trigger_id="p1",
                                      response_url=slack_api.response_url("press"))
            await apost_signed(adapter.url, press, SECRET)
            await settle(adapter, handled=4)
            assert proxy.refused > 0  # the database really was out of reach

            [down] = slack_api.responses("down")
            assert down["response_type"] == "ephemeral" and told_to_try_again(down["text"])
            [pressed] = slack_api.responses("press")
            assert pressed["response_type"] == "ephemeral" and told_to_try_again(pressed["text"])
            [said] = slack_api.calls_to("chat.postEphemeral")  # a `!` command has no response_url
            assert (said.params["channel"], said.params["user"]) == (JOINT, ALICE)
            assert said.params["thread_ts"] == "1764600000.000100" and told_to_try_again(said.params["text"])

            # Back: the sender tries again (a new invocation) and it goes through, once.
            proxy.restore()
            await slash(adapter, slack_api, LOG_OP, trigger="t2", name="again")
            await settle(adapter, handled=5)
            await deliver(parts, adapter)
            [again] = slack_api.responses("again")
            assert "OP-1 logged" in again["text"]
            assert await asyncio.to_thread(count, parts, OperationRow) == 1
            assert len(slack_api.responses("down")) == 1  # the refused one was never stored to be sent later


async def test_a_message_said_while_the_database_is_down_is_relayed_once_it_is_back(pg_url, clock, slack_api):
    other = "C0JOINT2"
    settings = slack_settings(slack_api.base_url)
    settings["zone"][0]["joint_rooms"].append(f"slack:{other}")
    seen = []
    with tcp_proxy(PG) as proxy:
        async with running(proxy.url_for(pg_url), clock, slack_api, seen, settings=settings) as (parts, adapter):
            proxy.cut()
            ts = "1764600000.000100"
            await apost_signed(adapter.url, event_body(message_event("pilot boards at 0600", ts=ts), "Ev1"), SECRET)
            await until(lambda: len(seen) >= 2, what="the message to be handed in again while the database is down")
            assert not slack_api.calls_to("chat.postMessage")

            proxy.restore()
            await settle(adapter, handled=1)
            # Slack retries the event meanwhile: relayed once all the same.
            await apost_signed(adapter.url, event_body(message_event("pilot boards at 0600", ts=ts), "Ev1"), SECRET,
                               extra_headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
            await settle(adapter, handled=2)
            await deliver(parts, adapter)
            [copy] = slack_api.calls_to("chat.postMessage")
            assert copy.params["channel"] == other and copy.params["text"].endswith("pilot boards at 0600")


async def test_a_command_stored_just_before_the_database_went_is_not_called_unstored(pg_url, clock, slack_api):
    """The database goes right after the command's transaction committed: the command was done, so the sender
    must not be told it was not (they would log it twice); its answer goes out once the database is back."""
    with tcp_proxy(PG) as proxy:
        async with running(proxy.url_for(pg_url), clock, slack_api) as (parts, adapter):
            replied = []

            def watch(_conn, _cursor, statement, *_args):
                if statement.lstrip().upper().startswith("INSERT INTO OUTBOX"):
                    replied.append(True)

            def cut_after_the_command(*_args):
                # The command's transaction (which wrote its reply) committed and gave its connection back.
                if replied and not proxy.is_cut:
                    proxy.cut()

            event.listen(parts.db.engine, "before_cursor_execute", watch)
            event.listen(parts.db.engine, "checkin", cut_after_the_command)
            await slash(adapter, slack_api, LOG_OP, trigger="t1", name="r1")
            await settle(adapter, handled=1)
            event.remove(parts.db.engine, "checkin", cut_after_the_command)
            assert proxy.is_cut and replied
            told = [r["text"] for r in slack_api.responses("r1")]
            assert not any("could not be stored" in t for t in told), told

            proxy.restore()
            await deliver(parts, adapter)
            [answer] = slack_api.responses("r1")  # answered once: before the cut was noticed, or after it
            assert "OP-1 logged" in answer["text"]
            assert await asyncio.to_thread(count, parts, OperationRow) == 1
