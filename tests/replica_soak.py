"""The replica soak (issue 16): three `watchfloor run` replicas on one PostgreSQL database, Slack (the Web API
stand-in, signed requests over HTTP) and Matrix (the real Synapse) both configured, while a killer SIGKILLs a
random replica at random moments (always leaving one alive) and starts it again.

One zone (LALB) whose joint rooms are a Matrix room and a Slack channel, so what is said in one is relayed to the
other, and whose watch rooms are on both. The driver produces, in one random sequence:

- relays: "soak sN" said in the Slack channel, "soak mN" in the Matrix room (N the message's number);
- commands: `!op log ... contact=scN` in Slack and `contact=mcN` in Matrix, each answered in its own room;
- clashes: a CBP operation on Slack (`paN`) and a USCG one on Matrix (`pbN`) at the same place and day, which
  raise one conflict: one alert in each watch room.

Slack requests go to a random live replica (each serves Slack HTTP); one that gets no answer is sent again to
another, with the same event id and `X-Slack-Retry-Num`, as Slack does. The zone's briefing is due while the
soak runs (or just before it, for the takeover's catch-up): once in each of its four rooms.

At the end (outbox drained, everything expected seen or nothing more arriving) each room is read as a user
reads it and checked: every message once, in the order sent per room. `Report` holds the counts and the
takeover times (kill → another replica's /metrics says it holds each duty the killed one held). What went wrong
comes with what the database says of it (`Soak.explain`), so a loss at Slack's intake (acknowledged, then killed
before it was stored: never claimed) is told apart from one in delivery, and so is a disorder already in the
outbox's order from one delivery made; the report counts the intake's apart (`Report.ok(excusing_intake=)`).

Operations are each on a day of their own (a clash's two share one), so no two clash by accident.
"""
from __future__ import annotations

import json
import random
import re
import statistics
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from watchfloor.ioc.zones import get_zone
from tests.fixtures.slack_api import MockSlackApi, event_body
from tests.test_replicas import SECRET, Replica, hand_over, one_holder_each, wait_until

JOINT, WATCH = "C0JOINT", "C0WATCH"
ALICE, BOB = "UALICE", "UBOB"  # CBP and USCG on Slack
DUTIES = ("scheduler", "matrix", "delivery:slack")
ZONE_TZ = ZoneInfo(get_zone("LALB").timezone)
FIRST_DAY = date(2031, 1, 1)

_RELAY = re.compile(r"\bsoak ([sm])(\d+)\b")
_CONTACT = re.compile(r"\bcontact (sc|mc|pa|pb)(\d+)\b")
_CF = re.compile(r"\bCF-(\d+)\b")


# ------------------------------------------------------------------------------------------------ the plan


@dataclass
class Item:
    n: int
    kind: str  # slack_relay | matrix_relay | slack_cmd | matrix_cmd | clash


MIX = (("slack_relay", 35), ("matrix_relay", 30), ("slack_cmd", 15), ("matrix_cmd", 12), ("clash", 8))


def plan(n: int, rng: random.Random) -> list[Item]:
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    return [Item(i + 1, rng.choices(kinds, weights)[0]) for i in range(n)]


def op_command(n: int, contact: str) -> str:
    day = FIRST_DAY + timedelta(days=n)
    lat = 33.70 + (n % 50) / 1000
    return f"!op log patrol at={lat:.3f},-118.27 start={day.isoformat()}T14:00 end=2h contact={contact}"


# ------------------------------------------------------------------------------------------------ results


@dataclass
class RoomCheck:
    """What one room shows of one kind of expected message: each number once, in the order sent."""
    room: str
    expected: list[int]
    seen: list[int]
    key: str = ""  # the produced item's kind prefix ("sr": Slack relay ...), for the evidence
    evidence: list[str] = field(default_factory=list)  # filled for what went wrong: what the database says
    # Of `out_of_order`, those whose outbox rows were already stored in the wrong order (the intake raced, the
    # delivery kept the order it was given): the known Slack intake race, told apart from delivery disorder.
    intake_disorder: list[int] = field(default_factory=list)

    @property
    def delivered(self) -> int:
        return len(set(self.seen) & set(self.expected))

    @property
    def lost(self) -> list[int]:
        return sorted(set(self.expected) - set(self.seen))

    @property
    def duplicated(self) -> list[int]:
        return sorted(k for k, c in Counter(self.seen).items() if c > 1)

    @property
    def unexpected(self) -> list[int]:
        return sorted(set(self.seen) - set(self.expected))

    @property
    def out_of_order(self) -> list[int]:
        """Numbers shown before one sent earlier (first showing of each, against the order sent)."""
        rank = {k: i for i, k in enumerate(self.expected)}
        firsts, seen = [], set()
        for k in self.seen:
            if k in rank and k not in seen:
                seen.add(k)
                firsts.append(k)
        out, highest = [], -1
        for k in firsts:
            if rank[k] < highest:
                out.append(k)
            highest = max(highest, rank[k])
        return out

    def ok(self, excusing_intake: bool = False) -> bool:
        disorder = [k for k in self.out_of_order if not (excusing_intake and k in self.intake_disorder)]
        return not (self.lost or self.duplicated or self.unexpected or disorder)

    def overtaken(self, k: int) -> list[int]:
        """The numbers sent after `k` and shown before it."""
        rank = {n: i for i, n in enumerate(self.expected)}
        before = self.seen[:self.seen.index(k)] if k in self.seen else []
        return [n for n in dict.fromkeys(before) if rank.get(n, -1) > rank[k]]

    def line(self) -> str:
        return (f"{self.room}: expected {len(self.expected)}, delivered {self.delivered}, lost {len(self.lost)}, "
                f"duplicated {len(self.duplicated)}, out of order {len(self.out_of_order)}, "
                f"unexpected {len(self.unexpected)}"
                + ("" if self.ok() else f" (lost {self.lost[:10]} dup {self.duplicated[:10]} "
                                        f"disorder {self.out_of_order[:10]} unexpected {self.unexpected[:10]})")
                + (f" [{len(self.intake_disorder)} of them stored so at intake]" if self.intake_disorder else "")
                + "".join(f"\n    {e}" for e in self.evidence))


@dataclass
class Report:
    checks: list[RoomCheck] = field(default_factory=list)
    kills: int = 0
    takeovers: dict[str, list[float]] = field(default_factory=dict)  # duty -> seconds, one per kill of its holder
    missed_takeovers: list[str] = field(default_factory=list)
    slack_retries: int = 0
    at_risk: list[str] = field(default_factory=list)  # Slack events acknowledged by a replica killed just after
    # Of those, the ones never stored (no claim): lost at intake, since bot/slack/adapter.py acknowledges a request before
    # it stores its work and Slack, acknowledged, never sends it again. Left out of the room checks (which would
    # count each, and the alert a lost clash did not raise), told apart here.
    intake_lost: list[str] = field(default_factory=list)
    intake_evidence: list[str] = field(default_factory=list)
    dead_rows: int = 0
    seconds: float = 0.0
    sent: int = 0

    def ok(self, *, excusing_intake: bool = False) -> bool:
        return (all(c.ok(excusing_intake) for c in self.checks) and not self.missed_takeovers and not self.dead_rows
                and (excusing_intake or not self.intake_lost))

    def totals(self) -> dict[str, int]:
        return {"expected": sum(len(c.expected) for c in self.checks),
                "delivered": sum(c.delivered for c in self.checks),
                "lost": sum(len(c.lost) for c in self.checks),
                "duplicated": sum(len(c.duplicated) for c in self.checks),
                "out_of_order": sum(len(c.out_of_order) for c in self.checks),
                "unexpected": sum(len(c.unexpected) for c in self.checks)}

    def takeover_lines(self) -> list[str]:
        out = []
        for duty, xs in sorted(self.takeovers.items()):
            if xs:
                out.append(f"takeover of {duty} after SIGKILL of its holder ({len(xs)}): median "
                           f"{statistics.median(xs):.1f} s, worst {max(xs):.1f} s")
        everything = [x for xs in self.takeovers.values() for x in xs]
        if everything:
            out.append(f"takeover, any duty ({len(everything)}): median {statistics.median(everything):.1f} s, "
                       f"worst {max(everything):.1f} s")
        return out

    def summary(self) -> str:
        t = self.totals()
        lines = [f"{self.sent} messages produced (a clash as one) in {self.seconds:.0f} s, {self.kills} SIGKILLs, "
                 f"{self.slack_retries} Slack requests sent again after no answer",
                 f"delivered {t['delivered']}/{t['expected']}, lost {t['lost']}, duplicated {t['duplicated']}, "
                 f"out of order {t['out_of_order']}, unexpected {t['unexpected']}, dead outbox rows "
                 f"{self.dead_rows}",
                 *(c.line() for c in self.checks), *self.takeover_lines()]
        if self.missed_takeovers:
            lines.append(f"takeovers not seen: {self.missed_takeovers}")
        if self.at_risk:
            lines.append(f"Slack events acknowledged by a replica killed within 2 s after: {len(self.at_risk)}")
        reordered = sum(len(c.intake_disorder) for c in self.checks)
        if reordered:
            lines.append(f"DISORDER at Slack intake (stored in the outbox out of the order sent; delivery kept the "
                         f"outbox's order): {reordered}")
        if self.intake_lost:
            lines.append(f"LOST at Slack intake (acknowledged 200 by a replica SIGKILLed before it stored them; "
                         f"not counted above): {len(self.intake_lost)} {self.intake_lost[:20]}")
            lines += [f"    {e}" for e in self.intake_evidence[:10]]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ the soak


class Soak:
    """`Soak(synapse, api, pg_url, tmp, world)` then `run(n=..., kill_every=..., ...)` → Report."""

    def __init__(self, synapse, api: MockSlackApi, pg_url: str, tmp: Path, world, *, replicas: int = 3,
                 seed: int | None = None, briefing_in: float = -2.0, log=print):
        self.synapse, self.api, self.pg_url, self.tmp, self.world = synapse, api, pg_url, Path(tmp), world
        self.rng = random.Random(seed)
        self.log = log
        # The zone's briefing time, minutes from now (zone local): before now, the first leader's catch-up posts
        # it and each takeover's catch-up must not again; after, the live job fires during the soak.
        at = datetime.now(UTC).astimezone(ZONE_TZ) + timedelta(minutes=briefing_in)
        self.briefing_time = f"{at:%H:%M}"
        self.group = [Replica(self.tmp, f"r{i}", pg_url, None, self._setup(i)) for i in range(replicas)]
        for r in self.group:
            # Replica writes its config before we know the Slack port it picked: filled in now.
            r.config.write_text(r.config.read_text().replace("{slack_port}", str(r.slack_port)))
        self._lock = threading.Lock()
        self._stop = threading.Event()  # the killer's
        self._stop_watching = threading.Event()  # the monitor's, once the last kill's takeover is seen
        self._kill_times: list[tuple[float, Replica]] = []
        self._acks: list[tuple[float, Replica, str]] = []
        self._last_duties: dict[str, dict[str, bool]] = {}
        self._pending_takeovers: list[tuple[float, str, str]] = []  # (killed at, duty, victim)
        self.origins: dict[str, str] = {}  # "sr17" -> the message's id on its platform (Slack ts, Matrix event)
        self.report = Report()

    def _setup(self, i: int) -> str:
        w, hs, bot = self.world, self.synapse.base_url, self.world.bot_user
        token = f"xoxb-r{i}"
        return (f'[slack]\nbot_token = "{token}"\nsigning_secret = "{SECRET}"\nport = {{slack_port}}\n'
                f'host = "127.0.0.1"\napi_url = "{self.api.base_url}"\n'
                f'[matrix]\nhomeserver = "{hs}"\nuser_id = "{bot["user_id"]}"\npassword = "{bot["password"]}"\n'
                f'device_id = "WFSOAK{i}"\nstore_path = "{self.tmp / f"store{i}"}"\n'
                f'[[zone]]\ncode = "LALB"\nbriefing_time = "{self.briefing_time}"\n'
                f'joint_rooms = ["matrix:{w.joint[0]}", "slack:{JOINT}"]\n'
                f'watch_rooms = ["matrix:{w.watch}", "slack:{WATCH}"]\n'
                f'[[agency]]\ncode = "CBP"\nmembers = ["slack:{ALICE}", "{w.alice.key}"]\n'
                f'[[agency]]\ncode = "USCG"\nmembers = ["slack:{BOB}", "{w.bob.key}"]\n')

    # ---------------------------------------------------------------------------------------- start, end

    def start(self, timeout: float = 90) -> None:
        for r in self.group:
            r.start()
        wait_until(self._one_holder_each, "one holder per duty", timeout, self.group)
        wait_until(self._matrix_listening, "the Matrix holder syncs and joined the rooms", timeout, self.group)

    def close(self) -> None:
        self._stop.set()
        self._stop_watching.set()
        for r in self.group:
            r.close()

    def live(self) -> list[Replica]:
        return [r for r in self.group if r.proc is not None and r.proc.poll() is None]

    def _one_holder_each(self) -> bool:
        return one_holder_each(self.live(), DUTIES)

    def _matrix_listening(self) -> bool:
        import psycopg

        with psycopg.connect(self.pg_url.replace("+psycopg", "")) as conn:
            stored = conn.execute("SELECT 1 FROM kv WHERE key LIKE 'matrix.sync_token:%'").fetchone()
        bot = self.world.bot_user["user_id"]
        joined = all(any(e["type"] == "m.room.member" and e.get("state_key") == bot
                         and e["content"].get("membership") == "join"
                         for e in self.synapse.messages(self.world.alice.token, room, 50))
                     for room in (self.world.joint[0], self.world.watch))
        return bool(stored) and joined

    def outbox_counts(self) -> dict[str, int]:
        import psycopg

        with psycopg.connect(self.pg_url.replace("+psycopg", "")) as conn:
            return dict(conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())

    # ---------------------------------------------------------------------------------------- producing

    def _slack(self, user: str, text: str, key: str) -> None:
        """`user` says `text` in the joint channel; Slack hands it to a live replica, and again to another (same
        event id, the retry number) until one answers 200. `key`: kind and number ("sr17"), unique."""
        ts = f"{1_800_000_000 + int(key[2:])}.{('sr', 'sc', 'pa').index(key[:2]) + 1:06d}"
        self.origins[key] = ts
        body = event_body({"type": "message", "channel": JOINT, "user": user, "text": text, "ts": ts,
                           "event_ts": ts, "channel_type": "channel"}, event_id=f"EvSoak{key}")

        def retried() -> None:
            with self._lock:
                self.report.slack_retries += 1

        to = hand_over(body, self.live, self.rng, on_retry=retried)
        with self._lock:
            self._acks.append((time.monotonic(), to, key))

    def _matrix(self, who, text: str, key: str) -> None:
        self.origins[key] = self.synapse.send_text(who.token, self.world.joint[0], text)

    def produce(self, items: list[Item], rate: float) -> None:
        for item in items:
            t0 = time.monotonic()
            n = item.n
            if item.kind == "slack_relay":
                self._slack(ALICE, f"soak s{n}", f"sr{n}")
            elif item.kind == "matrix_relay":
                self._matrix(self.world.alice, f"soak m{n}", f"mr{n}")
            elif item.kind == "slack_cmd":
                self._slack(ALICE, op_command(n, f"sc{n}"), f"sc{n}")
            elif item.kind == "matrix_cmd":
                self._matrix(self.world.alice, op_command(n, f"mc{n}"), f"mc{n}")
            else:  # a clash: CBP on Slack and USCG on Matrix, back to back, each may be handled first
                self._slack(ALICE, op_command(n, f"pa{n}"), f"pa{n}")
                self._matrix(self.world.bob, op_command(n, f"pb{n}"), f"pb{n}")
            self.report.sent += 1
            time.sleep(max(0.0, 1 / rate - (time.monotonic() - t0)))

    # ---------------------------------------------------------------------------------------- killing

    def killer(self, every: float, restart_after: tuple[float, float], max_kills: int | None,
               holders_first: float) -> None:
        """A kill every `every` seconds on average (always one replica left alive), each started again
        `restart_after` seconds later; the victim a holder of some duty with probability `holders_first`, else
        any live replica."""
        restarts: list[tuple[float, Replica]] = []
        next_kill = time.monotonic() + self.rng.uniform(0.5, 1.5) * every
        while not self._stop.is_set():
            now = time.monotonic()
            for due, r in list(restarts):
                if now >= due:
                    restarts.remove((due, r))
                    r.start()
            if now >= next_kill and (max_kills is None or self.report.kills < max_kills):
                live = self.live()
                if len(live) >= 2:
                    holding = [r for r in live if any((self._last_duties.get(r.name) or {}).get(d) for d in DUTIES)]
                    pick = holding if holding and self.rng.random() < holders_first else live
                    victim = self.rng.choice(pick)
                    held = [d for d, h in (self._last_duties.get(victim.name) or {}).items() if h and d in DUTIES]
                    victim.kill()
                    t = time.monotonic()
                    with self._lock:
                        self.report.kills += 1
                        self._kill_times.append((t, victim))
                        self._pending_takeovers.extend((t, d, victim.name) for d in held)
                    self._last_duties.pop(victim.name, None)
                    self.log(f"  SIGKILL {victim.name} (held {held or 'nothing'})")
                    restarts.append((t + self.rng.uniform(*restart_after), victim))
                next_kill = now + self.rng.uniform(0.5, 1.5) * every
            time.sleep(0.05)
        for _, r in restarts:  # left dead at the end: started again, for the final drain
            r.start()

    def monitor(self) -> None:
        """Each live replica's /metrics, every moment: who holds what, and when a killed holder's duty is held
        again (by another replica, or rarely by the killed one started again)."""
        while not self._stop_watching.is_set():
            for r in self.live():
                asked = time.monotonic()
                d = r.duties()
                if d is None:
                    continue
                self._last_duties[r.name] = d
                now = time.monotonic()
                with self._lock:
                    # An answer asked for before the kill may be the killed holder's own: not counted.
                    for p in [p for p in self._pending_takeovers if d.get(p[1]) and asked > p[0]]:
                        self.report.takeovers.setdefault(p[1], []).append(now - p[0])
                        self._pending_takeovers.remove(p)
            with self._lock:
                for p in [p for p in self._pending_takeovers if time.monotonic() - p[0] > 60]:
                    self.report.missed_takeovers.append(f"{p[1]} (killed {p[2]}; nobody held it within 60 s)")
                    self._pending_takeovers.remove(p)
            time.sleep(0.2)

    # ---------------------------------------------------------------------------------------- reading

    def matrix_timeline(self, room: str) -> list[dict]:
        """Every event of the room, oldest first (paged: /messages gives at most a page at a time)."""
        events, since = [], None
        while True:
            q = {"dir": "b", "limit": 500, **({"from": since} if since else {})}
            resp = self.synapse.request("GET", f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/messages",
                                        token=self.world.alice.token, query=q)
            chunk = resp.get("chunk", [])
            events.extend(chunk)
            since = resp.get("end")
            if not chunk or not since:
                return list(reversed(events))

    def matrix_texts(self, room: str) -> list[str]:
        bot = self.world.bot_user["user_id"]
        # An edit (m.replace) changes a message the user already sees: not one more message.
        return [e["content"].get("body") or "" for e in self.matrix_timeline(room)
                if e["sender"] == bot and e["type"] == "m.room.message"
                and (e["content"].get("m.relates_to") or {}).get("rel_type") != "m.replace"]

    def slack_texts(self, channel: str) -> list[str]:
        return [(m.get("text") or "") + json.dumps(m.get("blocks") or []) for m in self.api.messages_in(channel)]

    def checks(self, items: list[Item]) -> list[RoomCheck]:
        gone = set(self.report.intake_lost)
        by = {k: [i.n for i in items if i.kind == k] for k, _ in MIX}
        by["slack_relay"] = [n for n in by["slack_relay"] if f"sr{n}" not in gone]
        by["slack_cmd"] = [n for n in by["slack_cmd"] if f"sc{n}" not in gone]
        by["slack_clash"] = [n for n in by["clash"] if f"pa{n}" not in gone]
        mj, mw = self.world.joint[0], self.world.watch
        slack_joint, slack_watch = self.slack_texts(JOINT), self.slack_texts(WATCH)
        matrix_joint, matrix_watch = self.matrix_texts(mj), self.matrix_texts(mw)

        def relays(texts, origin):
            return [int(n) for t in texts for (o, n) in dict.fromkeys(_RELAY.findall(t)) if o == origin]

        def answers(texts, kinds):
            # A command's answer says its operation was logged; alerts and notices quoting it do not.
            return [(k, int(n)) for t in texts if "logged:" in t for (k, n) in dict.fromkeys(_CONTACT.findall(t))
                    if k in kinds]

        def alerts(texts):
            return [int(cf) for t in texts if "ALERT" in t for cf in dict.fromkeys(_CF.findall(t))]

        def briefings(texts):
            return [1 for t in texts if "Morning briefing" in t]

        slack_answers, matrix_answers = answers(slack_joint, ("sc", "pa")), answers(matrix_joint, ("mc", "pb"))
        clashes = len(by["slack_clash"])  # a clash whose CBP half was lost raised nothing
        out = [
            RoomCheck("Matrix room ← Slack relays", by["slack_relay"], relays(matrix_joint, "s"), "sr"),
            RoomCheck("Slack channel ← Matrix relays", by["matrix_relay"], relays(slack_joint, "m"), "mr"),
            # Commands are answered once each; their order is not promised across repliers (two replicas may
            # handle two commands at once), so it is checked only where one process answers in sync order.
            RoomCheck("Slack commands answered", by["slack_cmd"], sorted(n for k, n in slack_answers if k == "sc"),
                      "sc"),
            RoomCheck("Slack clash commands answered", by["slack_clash"],
                      sorted(n for k, n in slack_answers if k == "pa"), "pa"),
            RoomCheck("Matrix commands answered", by["matrix_cmd"], [n for k, n in matrix_answers if k == "mc"], "mc"),
            RoomCheck("Matrix clash commands answered", by["clash"], [n for k, n in matrix_answers if k == "pb"],
                      "pb"),
        ]
        # Conflict numbers are the database's: one alert per clash in each watch room, each conflict once.
        for name, texts in (("Slack watch alerts", slack_watch), ("Matrix watch alerts", matrix_watch)):
            seen = alerts(texts)
            distinct = sorted(set(seen))
            expected = distinct[:clashes] + list(range(-1, -1 - (clashes - len(distinct)), -1))
            out.append(RoomCheck(name, expected, seen))
            # Escalations (a clash nobody acknowledged in time): whichever come, each once.
            # (A Slack alert is edited to say it went up: the notice is the message that is not an alert.)
            late = [int(_CF.findall(t)[0]) for t in texts if "escalated to the" in t and "ALERT" not in t]
            out.append(RoomCheck(name.replace("alerts", "escalation notices"), list(dict.fromkeys(late)), late))
        for name, texts in (("Slack joint briefing", slack_joint), ("Slack watch briefing", slack_watch),
                            ("Matrix joint briefing", matrix_joint), ("Matrix watch briefing", matrix_watch)):
            out.append(RoomCheck(name, [1], briefings(texts)))
        return out

    def explain(self, checks: list[RoomCheck]) -> None:
        """For each message lost, shown twice or late: what the database says of it (was it claimed — handled
        at all —, its outbox rows with their status), and which replica acknowledged it to Slack and when it
        was killed. Enough to tell a loss at intake (acknowledged, then killed before it was stored) from one
        in delivery."""
        import psycopg

        kills = [(t, r.name) for t, r in self._kill_times]
        acks = {}
        for at, r, key in self._acks:
            killed = [f"{kt - at:+.2f} s" for kt, name in kills if name == r.name and 0 <= kt - at <= 5]
            acks[key] = f"acked by {r.name}" + (f", killed {killed[0]} after" if killed else "")
        with psycopg.connect(self.pg_url.replace("+psycopg", "")) as conn:
            def about(key: str) -> str:
                origin = self.origins.get(key)
                if origin is None:
                    return f"{key}: not sent"
                claims = [row[0] for row in conn.execute(
                    "SELECT event_id FROM handled_event WHERE event_id LIKE %s", (f"%{origin}%",))]
                rows = conn.execute("SELECT id, room, status, attempts, remote_id, last_error FROM outbox "
                                    "WHERE origin_event = %s ORDER BY id", (origin,)).fetchall()
                shown = "; ".join(f"outbox {i} {room.split(':')[0]} {st} attempts={a} remote={rid} {err or ''}"
                                  for i, room, st, a, rid, err in rows)
                via = acks.get(key, "sent to Synapse")
                return f"{key} ({origin}): {via}; claimed {claims or 'never'}; {shown or 'no outbox row'}"

            def stored_at(key: str) -> int | None:
                row = conn.execute("SELECT min(id) FROM outbox WHERE origin_event = %s",
                                   (self.origins.get(key, ""),)).fetchone()
                return row[0] if row else None

            self.report.intake_evidence = [about(key) for key in self.report.intake_lost]
            for c in checks:
                if not c.key:
                    continue
                for k in c.lost[:10]:
                    c.evidence.append("lost " + about(f"{c.key}{k}"))
                for k in c.duplicated[:5]:
                    c.evidence.append("twice " + about(f"{c.key}{k}"))
                for k in c.out_of_order:
                    ids = [stored_at(f"{c.key}{n}") for n in (k, *c.overtaken(k))]
                    if None not in ids and all(ids[0] > i for i in ids[1:]):
                        c.intake_disorder.append(k)
                for k in c.out_of_order[:5]:
                    c.evidence.append("late " + about(f"{c.key}{k}") + "; shown after "
                                      + ", ".join(about(f"{c.key}{n}") for n in c.overtaken(k)[:2]))

    # ---------------------------------------------------------------------------------------- the whole

    def run(self, n: int, *, rate: float = 5.0, kill_every: float = 5.0, max_kills: int | None = None,
            restart_after: tuple[float, float] = (1.0, 4.0), holders_first: float = 0.5,
            drain_timeout: float = 120.0, briefing_wait: float = 0.0) -> Report:
        items = plan(n, self.rng)
        t0 = time.monotonic()
        threads = [threading.Thread(target=self.monitor, daemon=True, name="soak-monitor"),
                   threading.Thread(target=self.killer, args=(kill_every, restart_after, max_kills, holders_first),
                                    daemon=True,
                                    name="soak-killer")]
        for t in threads:
            t.start()
        try:
            self.produce(items, rate)
            self.report.seconds = time.monotonic() - t0
            # The briefing due during the soak: the kills go on until it is posted, then stop.
            deadline = time.monotonic() + briefing_wait
            while time.monotonic() < deadline and not self._briefed():
                time.sleep(0.5)
        finally:
            self._stop.set()
            threads[1].join(timeout=30)
            # The takeover of a kill made just before the end is still measured.
            deadline = time.monotonic() + 65
            while self._pending_takeovers and time.monotonic() < deadline:
                time.sleep(0.2)
            self._stop_watching.set()
            threads[0].join(timeout=30)
        with self._lock:
            kills = list(self._kill_times)
            self.report.at_risk = [key for at, r, key in self._acks
                                   if any(v is r and 0 <= kt - at <= 2.0 for kt, v in kills)]
        # Settled by now: a killed replica stored its work (and claimed the event) or never will.
        self.report.intake_lost = [key for key in self.report.at_risk if not self._claimed(self.origins[key])]
        self._drain(items, drain_timeout)
        with self._lock:
            self.report.missed_takeovers += [f"{d} (killed {v}; not seen held again by the end)"
                                             for _, d, v in self._pending_takeovers]
        self.report.checks = self.checks(items)
        self.explain(self.report.checks)
        self.report.dead_rows = self.outbox_counts().get("dead", 0)
        return self.report

    def _claimed(self, origin: str) -> bool:
        import psycopg

        with psycopg.connect(self.pg_url.replace("+psycopg", "")) as conn:
            return conn.execute("SELECT 1 FROM handled_event WHERE event_id LIKE %s",
                                (f"%{origin}%",)).fetchone() is not None

    def _briefed(self) -> bool:
        return any("Morning briefing" in t for t in self.slack_texts(WATCH))

    def _drain(self, items: list[Item], timeout: float) -> None:
        """Until nothing is pending in the outbox and every room shows what it should, or (a loss) nothing
        more has arrived for a while."""
        wait_until(lambda: any(r.duties() for r in self.live()), "a replica answers after the soak", 60,
                   self.group)
        deadline = time.monotonic() + timeout
        quiet_since, last = time.monotonic(), None
        while time.monotonic() < deadline:
            pending = self.outbox_counts().get("pending", 0)
            checks = self.checks(items)
            state = (pending, sum(len(c.seen) for c in checks))
            if pending == 0 and all(not c.lost for c in checks):
                return
            if state != last:
                last, quiet_since = state, time.monotonic()
            elif pending == 0 and time.monotonic() - quiet_since > 15:
                return  # nothing more comes: what is missing is lost
            time.sleep(1.0)
