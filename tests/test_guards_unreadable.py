"""The sender of a message the bot cannot read is told once (contract, "Encrypted Matrix rooms"), by two guards
each of which holds on its own (bot/matrix/crypto.py):

- `overdue`: a kept message whose sender was told is not due again, in any later round nor after a restart
  (the told mark is stored with the notice);
- `tell`: the notice is stored under the message's dedupe key, so two tellers of one kept message (the process
  being replaced still finishing its last round as the new one does its first, or two replicas given one device)
  store it once.

The end-to-end case — a real encrypted message, the notice read by the sender's client — is
tests/test_matrix_e2e.py::test_a_message_whose_keys_come_late_is_kept_told_once_and_answered_once."""
from __future__ import annotations

import asyncio

from sqlmodel import select

from watchfloor.bot.matrix.crypto import Crypto, make_client
from watchfloor.storage.tables import OutboxRow
from tests.helpers import make_parts

ROOM = "!joint:hs.example"
SENDER = "@alice:hs.example"


def _parts(db_url, clock, tmp_path):
    return make_parts(db_url, clock, matrix={"homeserver": "http://127.0.0.1:9", "user_id": "@watchfloor:hs.example",
                                             "password": "x", "device_id": "WFTEST",
                                             "store_path": str(tmp_path / "store")},
                      zone=[{"code": "LALB", "joint_rooms": [f"matrix:{ROOM}"]}])


def _crypto(parts) -> Crypto:
    """The bot's keeper of unreadable messages as the adapter makes it, its kept messages read from the
    database (as at start)."""
    crypto = Crypto(make_client(parts.settings.matrix), parts, parts.settings.matrix, unreadable_after=60)
    crypto.load()
    return crypto


def _undecryptable(event_id: str, clock) -> dict:
    return {"type": "m.room.encrypted", "event_id": event_id, "sender": SENDER, "room_id": ROOM,
            "origin_server_ts": int(clock().timestamp() * 1000),
            "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEn...", "sender_key": "k",
                        "session_id": "s", "device_id": "ALICEDEV"}}


def _notices(parts) -> list[OutboxRow]:
    with parts.db.session() as s:
        return [r for r in s.exec(select(OutboxRow).where(OutboxRow.room == f"matrix:{ROOM}")).all()
                if "could not read your message" in r.payload]


def _round(crypto: Crypto) -> int:
    """What the adapter's unreadable round does with the overdue (bot/matrix/adapter.py): tell each, once."""
    due = crypto.overdue()
    for event_id, entry in due:
        crypto.tell(event_id, entry, "Alice")
    crypto.save()
    return len(due)


def test_a_sender_told_is_not_due_again_in_later_rounds_nor_after_a_restart(db_url, clock, tmp_path):
    parts = _parts(db_url, clock, tmp_path)
    crypto = _crypto(parts)
    asyncio.run(crypto.keep(ROOM, _undecryptable("$unreadable1", clock)))
    crypto.save()
    assert _round(crypto) == 0  # not yet: its keys may still come
    clock.advance(seconds=61)
    assert _round(crypto) == 1 and len(_notices(parts)) == 1
    for _ in range(3):
        clock.advance(seconds=30)
        assert _round(crypto) == 0, "told again in a later round"
    assert "$unreadable1" in crypto.pending  # still kept, for a key that comes late
    restarted = _crypto(parts)
    clock.advance(seconds=30)
    assert _round(restarted) == 0, "told again after a restart"
    assert len(_notices(parts)) == 1
    parts.db.dispose()


def test_two_tellers_of_one_kept_message_store_one_notice(db_url, clock, tmp_path):
    parts = _parts(db_url, clock, tmp_path)
    first = _crypto(parts)
    asyncio.run(first.keep(ROOM, _undecryptable("$unreadable2", clock)))
    first.save()
    second = _crypto(parts)  # read before the first tells: it too finds the sender not told yet
    clock.advance(seconds=61)
    assert [e for e, _ in first.overdue()] == [e for e, _ in second.overdue()] == ["$unreadable2"]
    assert _round(first) == 1
    _round(second)
    notices = _notices(parts)
    assert len(notices) == 1, f"the sender was told {len(notices)} times"
    parts.db.dispose()
