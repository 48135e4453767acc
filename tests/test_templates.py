"""Rendering user text: inert in every format. HTML is auto-escaped, template syntax in data is never evaluated,
Slack mrkdwn cannot ping everyone, Matrix @room is defused, control and direction-override characters go."""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchfloor.ioc.zones import get_zone
from watchfloor.templates import render

TZ = ZoneInfo("America/Los_Angeles")
T0 = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)


def op(**over):
    base = {"ref": "OP-1", "withheld": False, "marking": "UNCLASS", "agency": "CBP", "type": "boarding",
            "vessel": "IMO9074729", "place": "33.7400,-118.2700 ±500 m", "start": T0, "end": T0, "contact": "",
            "note": "", "status": "planned", "outcome": "", "created_by": "console:alice"}
    return {**base, **over}


def show(**over):
    return render("op_show.j2", tz=TZ, op=op(**over))


def test_html_is_autoescaped_no_live_tags():
    r = show(note='<a href="javascript:alert(1)">x</a><img src=x onerror=alert(1)><script>alert(1)</script>')
    assert "<a " not in r.html and "<img" not in r.html and "<script" not in r.html
    assert "&lt;a href=&#34;javascript:alert(1)&#34;&gt;" in r.html
    assert "&lt;img src=x onerror=alert(1)&gt;" in r.html
    # Our own markup is still there: escaping is of the data, not of the template.
    assert "<b>OP-1</b>" in r.html


def test_template_syntax_in_data_is_not_evaluated():
    r = show(note="{{ 7*7 }} {% for x in range(3) %}loop{% endfor %} {# c #} ${7*7}")
    for out in (r.text, r.html, json.dumps(r.blocks)):
        assert "49" not in out and "looploop" not in out
    assert "{{ 7*7 }}" in r.text and "{% for x in range(3) %}" in r.text


@pytest.mark.parametrize("mention", ["@room", "@channel", "@here", "@everyone", "@ROOM"])
def test_mass_mentions_are_defused(mention):
    r = show(note=f"hey {mention} look")
    for out in (r.text, r.html, json.dumps(r.blocks, ensure_ascii=False)):
        assert f"{mention} " not in out, out
    assert "@\u200b" + mention[1:] in r.text


def test_slack_specials_are_escaped_in_mrkdwn():
    r = show(note="<!channel> <!here> <!everyone> <@U123> <https://evil.example|click> a & b")
    mrkdwn = " ".join(b["text"]["text"] for b in r.blocks if b["type"] == "section")
    assert "<!" not in mrkdwn and "<@" not in mrkdwn and "<https" not in mrkdwn
    assert "&lt;!channel&gt;" in mrkdwn and "a &amp; b" in mrkdwn


def test_mrkdwn_escaping_through_macros_is_not_doubled():
    r = render("op_list.j2", tz=TZ, zone=get_zone("LALB"), which="all",
               ops=[op(vessel="<b>X</b> & Y")])
    mrkdwn = " ".join(b["text"]["text"] for b in r.blocks)
    assert "&lt;b&gt;X&lt;/b&gt; &amp; Y" in mrkdwn and "&amp;lt;" not in mrkdwn


def test_a_slack_owner_in_a_conflict_block_is_a_live_mention_and_user_text_stays_inert():
    """conflict_block's output is already formatted for Slack: rendered again it would show `&lt;@U1&gt;`."""
    cf = {"ref": "CF-1", "withheld": False, "kind": "overlap", "status": "acked", "acked_by": "slack:U0SAM",
          "escalated": False, "ops": [op(vessel="<@U0EVIL> & <!channel>")], "target": None}
    r = render("conflict_list.j2", tz=TZ, zone=get_zone("LALB"), include_all=False, conflicts=[cf])
    mrkdwn = " ".join(b["text"]["text"] for b in r.blocks)
    assert "owned by <@U0SAM>" in mrkdwn
    assert "&lt;@U0EVIL&gt; &amp; &lt;!channel&gt;" in mrkdwn and "<@U0EVIL>" not in mrkdwn
    assert "owned by U0SAM" in r.text and "<@" not in r.html


def test_control_and_direction_override_characters_are_removed():
    r = show(note="ab\u202ecd\u2066e\x1b[31mf\x07")
    for out in (r.text, r.html, json.dumps(r.blocks)):
        assert not any(c in out for c in "\u202e\u2066\x1b\x07")


def test_withheld_item_renders_only_ref_and_marking():
    r = render("op_show.j2", tz=TZ, op={"ref": "OP-12", "withheld": True, "marking": "LES"})
    assert r.text == "OP-12 (LES, details withheld)"


@pytest.mark.calendar_free
def test_buttons_belong_to_their_own_render():
    # The environment is shared between renders; buttons must not pile up from one message into the next.
    cf = {"ref": "CF-1", "kind": "overlap", "status": "open", "marking": "UNCLASS", "acked_by": "", "resolution": "",
          "resolved_by": "", "note": "", "closed_reason": "", "raised_at": T0, "escalated": False, "withheld": False,
          "ops": [op()], "target": None}
    data = {"zone": get_zone("LALB"), "tz": TZ, "raised": [cf], "closed": [], "cause": None, "escalation": False}
    first = render("alert.j2", **data)
    second = render("alert.j2", **data)
    actions = [b for b in second.blocks if b["type"] == "actions"]
    assert len(actions) == 1 and len(actions[0]["elements"]) == 5
    assert first.blocks == second.blocks


_NASTY = st.sampled_from(["<", ">", "&", "<!channel>", "@room", "@here", "{{", "}}", "{%", "%}", "\u202e",
                          "\x1b", "<script>", "&lt;", "javascript:", "`", "*", "_"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=20), _NASTY), max_size=12).map("".join))
def test_any_note_renders_inert(note):
    r = show(note=note, contact=note)
    assert "<" not in r.html.replace("<b>", "").replace("</b>", "").replace("<br>", "")
    mrkdwn = " ".join(b["text"]["text"] for b in r.blocks if b["type"] == "section")
    assert "<" not in mrkdwn and ">" not in mrkdwn
    for out in (r.text, r.html, mrkdwn):
        assert "\u202e" not in out and "\x1b" not in out
        assert not re.search(r"@(room|here|channel|everyone)\b", out, re.I)
