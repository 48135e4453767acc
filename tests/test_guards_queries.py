"""Round trips that must not grow with the rooms: inside every command's transaction the replies' rooms are asked
for their first waiting row in one query (`outbox.heads_of`), and acknowledging a conflict reads the alerts to
keep current in every watch room, the conflicts they show and what those show in a fixed number of queries
(`edit_alerts`), however many rooms and alerts there are."""
from __future__ import annotations

from contextlib import contextmanager

from sqlmodel import select

from watchfloor.storage import outbox
from watchfloor.storage.tables import OutboxRow
from tests.helpers import ConsoleUser, make_parts
from tests.test_listing_queries import counted


@contextmanager
def selects(parts):
    """The SELECT statements the database is sent meanwhile (the reads; writes grow with what is written)."""
    with counted(parts) as statements:
        seen: list[str] = []
        yield seen
        seen.extend(s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH")))


def test_heads_of_reads_every_room_in_one_query_and_keeps_the_order_per_room(db_url, clock):
    parts = make_parts(db_url, clock, zone=[{"code": "LALB"}])
    counts = {}
    for n in (1, 8):
        with parts.db.session() as s:
            # In every other room an older row still waits: only the rooms without one may be sent at once.
            waiting = [outbox.enqueue(s, room=f"slack:C{n}W{i}", kind="notice", payload={"text": "older"},
                                      now=clock()) for i in range(n) if i % 2]
            fresh = [outbox.enqueue(s, room=f"slack:C{n}W{i}", kind="reply", payload={"text": f"new {j}"},
                                    now=clock()) for i in range(n) for j in range(2)]
        with parts.db.session() as s:
            rows = list(s.exec(select(OutboxRow).where(OutboxRow.id.in_([r.id for r in fresh]))).all())
            with selects(parts) as seen:
                heads = outbox.heads_of(s, rows)
            counts[n] = len(seen)
        assert sorted(r.room for r in heads) == sorted(f"slack:C{n}W{i}" for i in range(n) if not i % 2
                                                       for _ in range(2))
        assert len(waiting) == n // 2
    assert counts[1] == counts[8] == 1, counts


ZONES = {"LALB": 1, "NY": 8}  # Matrix watch rooms per zone
WHERE = {"LALB": "at=33.74,-118.27", "NY": "at=40.68,-74.04"}


def _watch(zone: str) -> list[str]:
    return [f"matrix:!{zone.lower()}-watch{i}:hs.example" for i in range(ZONES[zone])]


def _posted(parts, zone: str) -> None:
    """What delivery leaves after posting a conflict's alert in every watch room of the zone, plus an older alert
    carrying the same conflict in each (a room keeps every alert of it current)."""
    with parts.db.session() as s:
        alerts = list(s.exec(select(OutboxRow).where(OutboxRow.kind == "alert",
                                                     OutboxRow.room.in_(_watch(zone)))).all())
        assert sorted(a.room for a in alerts) == sorted(_watch(zone))
        for n, row in enumerate(alerts):
            outbox.mark_sent(s, row.id, f"${zone}-alert{n}", row.created_at)
            outbox.enqueue(s, room=row.room, kind="alert", payload=outbox.payload(row), now=row.created_at,
                           status=outbox.SENT).remote_id = f"${zone}-older{n}"


def _ack_costs(parts, zone: str) -> tuple[int, int]:
    """(SELECTs of `!conflicts ack`, edits it queued) for the zone's one conflict."""
    alice = ConsoleUser(parts, zone, "alice", "CBP")
    bob = ConsoleUser(parts, zone, "bob", "USCG")
    sam = ConsoleUser(parts, zone, "sam", "USCG", "supervisor")
    alice.say(f"!op log boarding vessel=IMO9074729 {WHERE[zone]} start=+1h end=2h")
    said = bob.say(f"!op log patrol {WHERE[zone]} radius=1nm start=+1h end=2h")
    cf = said.split("Conflict raised: ")[1].split(" ")[0]
    _posted(parts, zone)
    with selects(parts) as seen:
        assert f"{cf} acknowledged" in sam.say(f"!conflicts ack {cf}")
    with parts.db.session() as s:
        edits = list(s.exec(select(OutboxRow).where(OutboxRow.kind == "edit",
                                                    OutboxRow.room.in_(_watch(zone)))).all())
    assert {e.room for e in edits} == set(_watch(zone))
    return len(seen), len(edits)


def test_acknowledging_edits_every_alert_in_the_same_number_of_queries_for_1_or_8_rooms(db_url, clock):
    parts = make_parts(db_url, clock, zone=[{"code": z, "watch_rooms": _watch(z)} for z in ZONES],
                       agency=[{"code": "CBP"}, {"code": "USCG"}])
    few, edits_few = _ack_costs(parts, "LALB")
    many, edits_many = _ack_costs(parts, "NY")
    assert (edits_few, edits_many) == (2, 16)
    assert many == few, f"`conflicts ack`: {few} queries with 1 watch room and 2 alerts, {many} with 8 and 16"
    parts.db.dispose()
