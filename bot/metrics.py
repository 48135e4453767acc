"""Prometheus metrics: one registry for the whole process, and the calls the rest of the bot makes.

Counters are cheap to call from anywhere (engine, bridge, deconfliction, scheduler). The outbox gauges are
read from the database when /metrics is scraped, so they are right even when another replica did the work.
Label values are bounded (command names, platforms, agency codes), never free text.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  (re-exported for the HTTP handler)
from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics, generate_latest

from watchfloor.commands.observers import listen

# The *_created series double every counter's output and no dashboard of ours reads them.
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)

COMMANDS = Counter("watchfloor_commands", "Chat commands handled, by command and outcome (ok, error, "
                   "duplicate, internal_error).", ["command", "outcome"], registry=REGISTRY)
RELAYS = Counter("watchfloor_messages_relayed", "Messages relayed into a room by the bridge, by the "
                 "platform of the room they went to.", ["platform"], registry=REGISTRY)
ALERTS = Counter("watchfloor_alerts", "Conflict alerts by event: raised, acked, resolved, escalated; and kind "
                 "(overlap, same-vessel, gap).", ["event", "kind"], registry=REGISTRY)
ACKS = Counter("watchfloor_acks", "Conflicts acknowledged, by how: command (typed), button, reaction (from a "
               "phone).", ["channel"], registry=REGISTRY)
AGENCY_ACTIVITY = Counter("watchfloor_agency_activity", "Commands and messages per agency: participation is "
                          "what tells an IOC which partners use it.", ["agency", "what"], registry=REGISTRY)
OUTBOX_PENDING = Gauge("watchfloor_outbox_pending", "Messages waiting in the outbox.", registry=REGISTRY)
OUTBOX_OLDEST = Gauge("watchfloor_outbox_oldest_age_seconds", "Age of the oldest message waiting in the "
                      "outbox (0 when empty).", registry=REGISTRY)
SCHEDULER_LEADER = Gauge("watchfloor_scheduler_leader", "1 while this process holds the scheduler lock.",
                         registry=REGISTRY)
OUTBOX_DEAD = Counter("watchfloor_outbox_dead", "Messages the outbox gave up on (refused for good, or failing "
                      "past the limits while the platform answered), by platform.", ["platform"], registry=REGISTRY)
DUTY_HELD = Gauge("watchfloor_duty_held", "1 while this replica holds the duty (scheduler, ais, matrix, "
                  "delivery:<platform>); with several replicas on PostgreSQL exactly one holds each.", ["duty"],
                  registry=REGISTRY)
EMAIL_REFUSED = Counter("watchfloor_email_refused", "E-mails the SMTP relay refused for good (a 5xx for the "
                        "address or the message): logged, not retried; by reply code.", ["code"], registry=REGISTRY)
PLATFORM_UP = Gauge("watchfloor_platform_up", "1 when the platform (or database) answered the last health "
                    "check.", ["platform"], registry=REGISTRY)


def record_command(name: str, outcome: str, agency: str | None = None) -> None:
    COMMANDS.labels(command=name or "unknown", outcome=outcome).inc()
    if agency:
        AGENCY_ACTIVITY.labels(agency=agency, what="command").inc()


def record_relay(platform: str, agency: str | None = None) -> None:
    RELAYS.labels(platform=platform).inc()
    if agency:
        AGENCY_ACTIVITY.labels(agency=agency, what="message").inc()


def record_alert(event: str, kind: str = "") -> None:
    """event: raised | acked | resolved | escalated; kind: the conflict kind."""
    ALERTS.labels(event=event, kind=kind).inc()


def record_activity(agency: str, what: str = "command") -> None:
    AGENCY_ACTIVITY.labels(agency=agency, what=what).inc()


def set_leader(is_leader: bool) -> None:
    SCHEDULER_LEADER.set(1 if is_leader else 0)


def set_duties(held: dict[str, bool]) -> None:
    for duty, on in held.items():
        DUTY_HELD.labels(duty=duty).set(1 if on else 0)


def set_platform_up(platform: str, up: bool) -> None:
    PLATFORM_UP.labels(platform=platform).set(1 if up else 0)


def record_dead(platform: str) -> None:
    OUTBOX_DEAD.labels(platform=platform).inc()


def record_email_refused(code: int) -> None:
    EMAIL_REFUSED.labels(code=str(code)).inc()


def refresh_outbox(db: Any, now: datetime | None = None) -> None:
    """Read the outbox depth from the database into the gauges (called at scrape time)."""
    from watchfloor.storage.outbox import depth

    with db.session() as s:
        pending, oldest = depth(s)
    OUTBOX_PENDING.set(pending)
    if oldest is None:
        OUTBOX_OLDEST.set(0)
        return
    if oldest.tzinfo is None:  # SQLite hands back naive UTC
        oldest = oldest.replace(tzinfo=UTC)
    OUTBOX_OLDEST.set(max(0.0, ((now or datetime.now(UTC)) - oldest).total_seconds()))


def exposition() -> bytes:
    """The registry in the Prometheus text format."""
    return generate_latest(REGISTRY)


def observe_command(ctx: Any, outcome: str) -> None:
    """Count and log one handled command (called by the engine). Never raises: telemetry must not turn a
    handled command into an error."""
    try:
        cmd, sender, room = ctx.cmd, ctx.sender, ctx.room
        record_command(cmd.name, outcome, sender.agency)
        if outcome == "ok" and cmd.name == "conflicts" and cmd.action in ("ack", "resolve"):
            record_alert("acked" if cmd.action == "ack" else "resolved")
        if outcome == "ok" and cmd.name == "conflicts" and cmd.action == "ack":
            ACKS.labels(ack_channel(ctx.msg)).inc()
        mark = cmd.pairs.get("mark")
        from watchfloor.bot.logs import log_command

        log_command(command=cmd.name, action=cmd.action, outcome=outcome, room=room.id, sender=sender.id,
                    agency=sender.agency, event_id=ctx.msg.event_id,
                    marking=(mark.text.upper() if mark is not None else None) or _text_marking(ctx.msg.text),
                    error=ctx.replies[0][1].get("message") if outcome == "error" and ctx.replies else None)
    except Exception:  # pragma: no cover - telemetry is best effort
        import logging

        logging.getLogger("watchfloor.metrics").debug("could not record a command", exc_info=True)


def ack_channel(msg: Any) -> str:
    """How an acknowledgement came: a reaction (Matrix m.reaction, Slack reaction_added), an alert's button, or
    a typed command. The adapters say it in the message's id and extras."""
    event_id = str(msg.event_id)
    if msg.extra.get("reaction_to") or ":reaction-" in event_id:
        return "reaction"
    return "button" if event_id.startswith("slack-action:") else "command"


def observe_alerts(zone: str, raised: Any, closed: Any, rooms: int) -> None:
    """Count and log the conflicts an alert announced (called by the deconfliction). Never raises."""
    try:
        from watchfloor.bot.logs import log_alert

        for cf in raised:
            record_alert("raised", cf.kind)
            log_alert(event="raised", conflict=f"CF-{cf.id}", kind=cf.kind, zone=zone, marking=cf.marking,
                      rooms=rooms)
        for cf in closed:
            log_alert(event="closed", conflict=f"CF-{cf.id}", kind=cf.kind, zone=zone, marking=cf.marking,
                      rooms=rooms)
    except Exception:  # pragma: no cover
        pass


def observe_escalations(escalated: Any) -> None:
    try:
        from watchfloor.bot.logs import log_alert

        for cf in escalated:
            record_alert("escalated", cf.kind)
            log_alert(event="escalated", conflict=f"CF-{cf.id}", kind=cf.kind, zone=cf.zone_code,
                      marking=cf.marking)
    except Exception:  # pragma: no cover
        pass


def _text_marking(text: str) -> str | None:
    from watchfloor.ioc.markings import marking_of_text

    return marking_of_text(text).value


listen("command", observe_command)
listen("alerts", observe_alerts)
listen("escalations", observe_escalations)
