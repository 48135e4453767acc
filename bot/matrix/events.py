"""From Matrix timeline events to `ChatMessage`s, and from outbox payloads to Matrix message content.

Edits and redactions travel as ChatMessages too, so the bridge sees every platform alike:
`extra["edit_of"]` names the edited message (text is the new text), `extra["redacts"]` the removed one.
"""
from __future__ import annotations

import re
from typing import Any

from watchfloor.commands.message import ChatMessage

from watchfloor.bot.matrix.markup import NameOf, readable

HTML_FORMAT = "org.matrix.custom.html"
_REPLY_FALLBACK = re.compile(r"\A(?:> [^\n]*\n)+\n", re.MULTILINE)


def strip_reply_fallback(body: str) -> str:
    """Older clients quote the replied-to message at the top of a reply; the bridge relays only the reply."""
    return _REPLY_FALLBACK.sub("", body, count=1)


def room_key(room_id: str) -> str:
    return f"matrix:{room_id}"


def chat_message(room_id: str, source: dict[str, Any], sender_name: str | None,
                 name_of: NameOf = lambda _user: None) -> ChatMessage | None:
    """The ChatMessage for one raw timeline event, or None for events nobody acts on. `name_of` gives the
    display name of a user the message mentions (None: unknown)."""
    etype = source.get("type")
    sender = source.get("sender", "")
    event_id = source.get("event_id", "")
    if not event_id or not sender:
        return None
    base = dict(platform="matrix", room=room_key(room_id), sender=f"matrix:{sender}", event_id=event_id,
                sender_name=sender_name)
    if etype == "m.room.redaction":
        redacts = source.get("redacts") or source.get("content", {}).get("redacts")
        return ChatMessage(text="", extra={"redacts": redacts}, **base) if redacts else None
    if etype == "m.reaction":
        return _ack_reaction(source, base)
    if etype != "m.room.message":
        return None
    content = source.get("content") or {}
    relates = content.get("m.relates_to") or {}
    if relates.get("rel_type") == "m.replace":
        new = content.get("m.new_content") or {}
        if not _is_talk(new) or not relates.get("event_id"):
            return None
        return ChatMessage(text=text_of(new, name_of), extra={"edit_of": relates["event_id"]}, **base)
    if not _is_talk(content):
        return None  # notices are bot talk (ours or another bot's): never commands, never relayed
    reply_to = (relates.get("m.in_reply_to") or {}).get("event_id")
    body = text_of(content, name_of, reply=bool(reply_to))
    # An emote keeps its body as said (so `/me [LES] ...` keeps its marking at the start); the relay adds the "*".
    extra = {"emote": True} if content.get("msgtype") == "m.emote" else {}
    return ChatMessage(text=body, reply_to=reply_to, extra=extra, **base)


# ✅ ✔️ 👍 (any skin tone): a supervisor acknowledging an alert from a phone.
_ACK_KEYS = frozenset({"\u2705", "\u2714", "\U0001f44d"})
_KEY_MODIFIERS = re.compile("[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")


def _ack_reaction(source: dict[str, Any], base: dict[str, Any]) -> ChatMessage | None:
    """An acknowledging reaction as the command it stands for; the engine finds the alert's conflicts
    (`reaction_to`) and refuses anyone who may not acknowledge. Other reactions are nobody's business."""
    relates = (source.get("content") or {}).get("m.relates_to") or {}
    key = _KEY_MODIFIERS.sub("", str(relates.get("key", "")))
    if relates.get("rel_type") != "m.annotation" or key not in _ACK_KEYS or not relates.get("event_id"):
        return None
    return ChatMessage(text="!conflicts ack", extra={"reaction_to": relates["event_id"]}, **base)


def text_of(content: dict[str, Any], name_of: NameOf, reply: bool = False) -> str:
    """The message as its sender saw it: mentions as names, links as plain links (see matrix_markup)."""
    body = str(content.get("body", ""))
    if reply:
        body = strip_reply_fallback(body)
    return readable(body, html_of(content), name_of)


def html_of(content: dict[str, Any]) -> str | None:
    html = content.get("formatted_body")
    return html if content.get("format") == HTML_FORMAT and isinstance(html, str) else None


def _is_talk(content: dict[str, Any]) -> bool:
    return content.get("msgtype") in ("m.text", "m.emote") and isinstance(content.get("body"), str)


def message_content(kind: str, payload: dict[str, Any], *, target_id: str | None = None,
                    reply_to_remote: str | None = None) -> dict[str, Any]:
    """The `m.room.message` content for an outbox row: relays read as talk, everything else as bot notices."""
    msgtype = "m.text" if kind in ("relay", "edit") else "m.notice"
    text = payload.get("text", "")
    html = payload.get("html") or None
    mentions = [u for u in payload.get("mentions") or [] if isinstance(u, str)]
    if mentions and kind != "edit":
        # An alert calling the watch by name: m.text, as the default push rules never notify for an m.notice
        # (.m.rule.suppress_notices comes first), and m.mentions so exactly these users' phones ring.
        msgtype = "m.text"
    content: dict[str, Any] = {"msgtype": msgtype, "body": text}
    if mentions and kind != "edit":
        content["m.mentions"] = {"user_ids": mentions}
    if html:
        content.update(format=HTML_FORMAT, formatted_body=html)
    if kind == "edit":
        new = dict(content)
        content = {"msgtype": msgtype, "body": f"* {text}", "m.new_content": new,
                   "m.relates_to": {"rel_type": "m.replace", "event_id": target_id}}
        if html:
            content.update(format=HTML_FORMAT, formatted_body=f"* {html}")
        return content
    if payload.get("thread_root") and not reply_to_remote:
        # A change of an alert's conflict, said once in the alert's thread.
        root = payload["thread_root"]
        content["m.relates_to"] = {"rel_type": "m.thread", "event_id": root, "is_falling_back": True,
                                   "m.in_reply_to": {"event_id": root}}
    if reply_to_remote:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to_remote}}
    return content
