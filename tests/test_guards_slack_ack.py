"""Nothing lost at the door, with real `watchfloor run` replicas on PostgreSQL and signed Slack requests: a
request the replica cannot store within its 2 s budget (here: the claims table locked, as a slow or busy database
would hold it) is not acknowledged — it is answered 503, so Slack sends it again — and

- if that replica is then killed, the retry Slack sends to another replica is stored, once;
- if it lives on, its own work and the retries finish as one: the command is done once and answered once
  (the message's claimed id).

Slack's retry is the same body with `X-Slack-Retry-Num` (tests/fixtures/slack_api.py `post_signed`)."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import psycopg
import pytest

from tests.fixtures.slack_api import event_body, post_signed
from tests.test_replicas import ALICE, JOINT, SECRET, api, log_op, one_holder_each, posts, replicas, wait_until

pytestmark = pytest.mark.postgres

__all__ = ["api", "replicas"]  # the fixtures of tests/test_replicas.py, used here


def request(n: int) -> str:
    """Alice's `!op log` in the joint channel, as Slack's Events API sends it (its event id names it)."""
    ts = f"1764600{n:03d}.000100"
    return event_body({"type": "message", "channel": JOINT, "user": ALICE, "text": log_op(n), "ts": ts,
                       "event_ts": ts, "channel_type": "channel"}, event_id=f"EvSlow{n}")


def retry(url: str, body: str, n: int = 1) -> tuple[int, str]:
    return post_signed(url, body, SECRET, extra_headers={"X-Slack-Retry-Num": str(n),
                                                         "X-Slack-Retry-Reason": "http_error"})


@contextmanager
def claims_locked(pg_url: str):
    """Another session holds the table of claimed messages: every replica's storing waits behind it."""
    with psycopg.connect(pg_url.replace("+psycopg", "")) as conn:
        conn.execute("LOCK TABLE handled_event IN EXCLUSIVE MODE")
        yield
        conn.rollback()


def operations(pg_url: str) -> int:
    with psycopg.connect(pg_url.replace("+psycopg", "")) as conn:
        return conn.execute("SELECT count(*) FROM operation").fetchone()[0]


def timed(url: str, body: str) -> tuple[int, float]:
    t0 = time.monotonic()
    status, _ = post_signed(url, body, SECRET, timeout=15)
    return status, time.monotonic() - t0


def test_a_request_not_stored_in_time_is_not_acknowledged_and_its_retry_to_another_replica_stores_it_once(
        replicas, api, pg_url):
    group = replicas(2)
    wait_until(lambda: one_holder_each(group), "one holder per duty", 40, group)
    first, other = group
    body = request(1)
    with claims_locked(pg_url):
        status, took = timed(first.events_url, body)
        first.kill()  # before it could store anything
    alive = [other]
    wait_until(lambda: one_holder_each(alive), "the other replica holds every duty", 30, group)
    if status != 200:  # what Slack does with a request not acknowledged: send it again (here, to the other)
        assert retry(other.events_url, body)[0] == 200
    wait_until(lambda: posts(api, "OP-1 logged"), f"the answer (the first replica answered {status} after "
               f"{took:.1f} s, then was killed)", 15, group)
    time.sleep(1.5)  # a second answer, if there were one, would be here by now
    assert len(posts(api, "OP-1 logged")) == 1
    assert operations(pg_url) == 1
    assert status == 503 and took < 3.0  # within Slack's 3 s: Slack counts a later answer a timeout anyway


def test_a_slow_replica_and_slacks_retries_to_another_do_the_command_once(replicas, api, pg_url):
    group = replicas(2)
    wait_until(lambda: one_holder_each(group), "one holder per duty", 40, group)
    first, other = group
    body = request(2)
    answers: dict[str, tuple[int, float]] = {}
    with claims_locked(pg_url):
        answers["first"] = timed(first.events_url, body)
        # Slack's first retry comes at once; the load balancer sends it to the other replica, which waits too.
        again = threading.Thread(target=lambda: answers.__setitem__("retry", timed(other.events_url, body)))
        again.start()
        time.sleep(1.0)
    again.join(15)
    assert answers["first"][0] == 503 and answers["retry"][0] in (200, 503), answers
    # Both attempts go on and finish; Slack's later retry finds the command done.
    wait_until(lambda: posts(api, "OP-1 logged"), "the answer", 20, group)
    assert retry(other.events_url, body, 2)[0] == 200
    time.sleep(1.5)
    assert len(posts(api, "OP-1 logged")) == 1
    assert operations(pg_url) == 1
