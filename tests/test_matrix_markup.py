"""Matrix mentions and links as people read them, before a message crosses the bridge (no homeserver needed:
the real-Synapse case is in test_matrix_bridge.py)."""
from __future__ import annotations

from watchfloor.bot.matrix.events import chat_message
from watchfloor.bot.matrix.markup import readable
from watchfloor.ioc.markings import Marking, marking_of_text

NAMES = {"@bob:example.org": "Bob", "@sam:example.org": "Sam"}.get
HTML = "org.matrix.custom.html"


def pill(user: str, text: str) -> str:
    return f'<a href="https://matrix.to/#/{user}">{text}</a>'


def test_a_pill_whose_body_holds_the_user_id_reads_with_the_display_name():
    html = f"{pill('@bob:example.org', 'Bob')}: can you check berth 12?"
    assert readable("@bob:example.org: can you check berth 12?", html, NAMES) == "Bob: can you check berth 12?"
    # Element writes the name in the body already: nothing changes.
    assert readable("Bob: can you check berth 12?", html, NAMES) == "Bob: can you check berth 12?"


def test_a_mentioned_user_the_room_does_not_know_is_named_by_the_pill_else_left_as_written():
    html = f"ask {pill('@carol:example.org', 'Carol')}"
    assert readable("ask @carol:example.org", html, NAMES) == "ask Carol"
    assert readable("ask @carol:example.org.", None, NAMES) == "ask @carol:example.org."
    assert readable("ask @sam:example.org.", None, NAMES) == "ask Sam."


def test_links_become_plain_links():
    html = 'see the <a href="https://example.org/plan">plan</a>'
    assert readable("see the plan", html, NAMES) == "see the plan (https://example.org/plan)"
    assert readable("see the [plan](https://example.org/plan)", html, NAMES) == \
        "see the plan (https://example.org/plan)"
    same = '<a href="https://example.org/plan">https://example.org/plan</a>'
    assert readable("https://example.org/plan", same, NAMES) == "https://example.org/plan"


def test_html_a_client_put_in_the_plain_body_is_read_as_html():
    body = f'{pill("@bob:example.org", "Bob")} see <a href="https://x.org/a">this</a> &amp; reply'
    assert readable(body, None, NAMES) == "Bob see this (https://x.org/a) & reply"


def test_addresses_that_only_look_like_user_ids_are_left_alone():
    text = "mail ops@example.org:25 or open https://matrix.to/#/@bob:example.org"
    assert readable(text, None, NAMES) == text


def test_the_quoted_message_of_a_reply_names_nobody():
    html = (f"<mx-reply><blockquote>{pill('@carol:example.org', 'Carol')} said</blockquote></mx-reply>"
            f"{pill('@bob:example.org', 'Bob')} agreed")
    assert readable("@bob:example.org agreed", html, lambda _u: None) == "Bob agreed"


def test_a_marked_message_keeps_its_marking_and_edits_are_read_alike():
    source = {"type": "m.room.message", "event_id": "$1", "sender": "@alice:example.org",
              "content": {"msgtype": "m.text", "body": "[LES] @bob:example.org boards at 0300", "format": HTML,
                          "formatted_body": f"[LES] {pill('@bob:example.org', 'Bob')} boards at 0300"}}
    msg = chat_message("!r:example.org", source, "Alice", NAMES)
    assert msg.text == "[LES] Bob boards at 0300" and marking_of_text(msg.text) is Marking.LES

    edit = {"type": "m.room.message", "event_id": "$2", "sender": "@alice:example.org",
            "content": {"msgtype": "m.text", "body": "* fixed", "m.relates_to": {"rel_type": "m.replace",
                                                                                "event_id": "$1"},
                        "m.new_content": {"msgtype": "m.text", "body": "@sam:example.org boards at 0400"}}}
    assert chat_message("!r:example.org", edit, "Alice", NAMES).text == "Sam boards at 0400"
