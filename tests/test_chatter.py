"""`!` is not only for the bot: people shout `!URGENT` in joint rooms. A message is for the bot when its first
word names a command, or is a likely typo of one; everything else is talk, bridged and never answered.

What a user expects of a typo (decided here): `!taget list` or `!opp log patrol at=..` was meant for the bot.
The sender alone gets the hint ("did you mean !target?") and the message is not bridged — it is a command's
words, possibly marked details (`mark=LES`), that the other agencies' rooms were never meant to read, and the
sender simply retypes it. A near miss of a command name that is not followed by command words (`!top priority`,
`!ok`) is talk. The decision is `grammar.is_command`, the one function the engine, the bridge and the adapters
ask.
"""
from __future__ import annotations

import pytest

from watchfloor.commands.errors import CommandError
from watchfloor.commands.grammar import is_command, parse
from tests.fixtures.slack_api import apost_signed, event_body
from tests.test_console_e2e import console
from tests.test_slack_adapter import (ALICE, JOINT, SECRET, deliver, message_event, running, settle,
                                      slack_settings)

TALK = ["!URGENT pilot refused boarding", "!!! man overboard", "!top priority: pilot boards 0600", "!ok",
        "!ok all clear", "!on it now", "!hepl", "!nonsense", "!frobnicate now", "!FYI the op list is long", "!",
        "!123 boats"]
COMMANDS = ["!op list", "/zone", "!help", "!Target list", "!conflicts"]
TYPOS = {"!taget list": "target", "!opp log patrol at=33.7,-118.2": "op", "!conflcits ack CF-1": "conflicts",
         "!targte show TGT-3": "target", "!zoen now": "zone"}


@pytest.mark.parametrize("text", TALK)
def test_talk_that_starts_with_a_bang_is_not_for_the_bot(text):
    assert not is_command(text)


@pytest.mark.parametrize("text", COMMANDS + list(TYPOS))
def test_commands_and_their_likely_typos_are_for_the_bot(text):
    assert is_command(text)


@pytest.mark.parametrize("text,meant", TYPOS.items())
def test_a_typo_is_answered_with_the_command_it_likely_meant(text, meant):
    with pytest.raises(CommandError) as e:
        parse(text)
    word = text[1:].split()[0]
    assert e.value.line == f"command: unknown command '{word}'; did you mean !{meant}?"


def test_console_room_does_not_answer_talk_and_hints_at_typos(sqlite_url):
    out = console(sqlite_url, ["console", "--zone", "LALB", "--user", "alice", "--agency", "CBP"],
                  "!URGENT pilot refused boarding", "!taget list", "!top priority: pilot boards 0600", "!zone")
    lines = out.stdout.splitlines()
    assert lines[0] == "⚠ command: unknown command 'taget'; did you mean !target?", out.stdout
    assert "LALB" in lines[1]  # the next line printed is the answer to !zone: the talk got none
    assert "URGENT" not in out.stdout and "unknown command 'top'" not in out.stdout and "try !help" not in out.stdout


async def test_bang_talk_in_a_joint_channel_is_bridged_and_unanswered_a_typo_is_neither(sqlite_url, clock,
                                                                                         slack_api):
    other = "C0JOINT2"
    settings = slack_settings(slack_api.base_url)
    settings["zone"] = [{**settings["zone"][0], "joint_rooms": [f"slack:{JOINT}", f"slack:{other}"]}]
    slack_api.users[ALICE] = {"real_name": "Alice Jones", "display_name": "Alice"}
    async with running(sqlite_url, clock, slack_api, settings=settings) as (parts, adapter):
        said = message_event("!URGENT pilot refused boarding", ts="1764600000.000100")
        assert (await apost_signed(adapter.url, event_body(said, event_id="Ev1"), SECRET))[0] == 200
        await settle(adapter, handled=1)
        await deliver(parts, adapter)
        [copy] = slack_api.calls_to("chat.postMessage")
        assert copy.params["channel"] == other
        assert copy.params["text"] == "[CBP] Alice: !URGENT pilot refused boarding"
        assert not slack_api.calls_to("chat.postEphemeral")  # and the bot did not answer it

        typo = message_event("!taget list", ts="1764600001.000100")
        assert (await apost_signed(adapter.url, event_body(typo, event_id="Ev2"), SECRET))[0] == 200
        await settle(adapter, handled=2)
        await deliver(parts, adapter)
        [hint] = slack_api.calls_to("chat.postEphemeral")
        assert hint.params["user"] == ALICE and hint.params["channel"] == JOINT
        assert "did you mean !target?" in hint.params["text"]
        assert len(slack_api.calls_to("chat.postMessage")) == 1  # not relayed to the other joint channel
