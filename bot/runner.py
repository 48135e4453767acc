"""`watchfloor run`: every configured adapter, the bridge, delivery, the scheduler and the health server,
until SIGTERM or SIGINT.

`Service` is the running whole without the process concerns (signals, exit codes), so tests run it in-process.
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import signal
from typing import Any

from watchfloor.commands.grammar import is_command
from watchfloor.commands.message import ChatMessage
from watchfloor.config import Settings
from watchfloor.storage.outage import unreachable

from watchfloor.bot.adapter import Adapter
from watchfloor.bot.bridge import Bridge
from watchfloor.bot.delivery import Delivery
from watchfloor.bot.logs import configure_logging

log = logging.getLogger("watchfloor.run")
STOP_BUDGET = 8.0  # seconds: the contract allows 10 between SIGTERM and exit
# How long start-up waits for the homeserver before serving without it (Matrix keeps trying in the background): a
# refused login still stops us at once, a homeserver that is down or silent no longer holds health, Slack and the
# scheduler back for 15 s.
MATRIX_START_WAIT = 2.0


class Service:
    """`duties` (bot.duties.Duties; `watchfloor run` gives one): with several replicas on PostgreSQL, Matrix sync
    and each platform's delivery run only on the replica holding their duty; without, this process does all."""

    def __init__(self, parts, adapters: list[Adapter], *, delivery: Delivery | None = None, duties=None):
        self.parts = parts
        self.adapters = adapters
        self.bridge = Bridge(parts)
        self.delivery = delivery or Delivery(parts, adapters)
        self.duties = duties
        self.wakeups = None
        if duties is not None:
            self.delivery.duties = duties

    async def on_message(self, msg: ChatMessage) -> None:
        """One platform message: a command goes to the engine, anything else said in a joint room to the bridge.

        Raises when the database cannot be reached (`storage.outage.unreachable`): nothing was done, and the
        adapter keeps the message to hand it in again."""
        changes = msg.extra.get("edit_of") or msg.extra.get("redacts")
        if not changes and is_command(msg.text):
            rows, heads = await asyncio.to_thread(self._command, msg)
            self.delivery.deliver_now(heads)
            self.delivery.wake()  # alerts the command raised are not among its rows
        else:
            rows = await asyncio.to_thread(self.bridge.relay, msg)
            if rows:
                self.delivery.wake()

    def _command(self, msg: ChatMessage):
        """Run the command and, in the same worker thread, see which replies can be sent at once."""
        handled = self.parts.engine.handle(msg, raise_unreachable=True)
        rows = handled.rows
        if handled.heads is not None:
            return rows, handled.heads
        try:
            return rows, self.delivery.heads(rows)
        except Exception as e:
            if not unreachable(e):
                raise
            return rows, []  # the command is stored: its replies go with the worker once the database is back

    async def start(self) -> None:
        await self.delivery.start()
        duties = self.duties
        if duties is not None:
            from watchfloor.bot.duties import OutboxWakeups, delivery_duty

            for adapter in self.adapters:
                # Taking a platform's delivery over: its rooms' head rows are looked up before they are sent,
                # since the replica that held it may have posted rows it did not live to record.
                recheck = self._rechecking(adapter.platform)
                if adapter.platform == "matrix" and duties.shared:
                    adapter.wait_for_duty = True
                    adapter.holds_duty = lambda: duties.held(delivery_duty("matrix"))
                    duties.add(delivery_duty("matrix"), recheck(adapter.take_duty), adapter.drop_duty)
                else:
                    duties.add(delivery_duty(adapter.platform), recheck(None))
            self.wakeups = OutboxWakeups(self.parts.db, self._woken)
            self.wakeups.start()
        for adapter in self.adapters:
            await adapter.start(self.on_message)
        if duties is not None:
            await duties.start()

    def _rechecking(self, platform: str):
        def wrap(take):
            async def on_take() -> None:
                self.delivery.recheck(platform)
                if take is not None:
                    await take()
            return on_take
        return wrap

    def _woken(self, platform: str) -> None:
        """A replica stored rows of `platform` (NOTIFY): wake its delivery if it is ours to send."""
        if self.delivery.holds(platform):
            self.delivery.wake(platform)

    async def stop(self) -> None:
        """Delivery finishes the sends in flight and starts no more; then each adapter stops receiving, finishing
        the message in hand. What is left in the outbox (replies to those last messages) goes out on next start."""
        await self.delivery.stop(timeout=STOP_BUDGET / 4)
        for adapter in self.adapters:
            try:
                await asyncio.wait_for(adapter.stop(), STOP_BUDGET / 2)
            except Exception:
                log.exception("stopping %s failed", getattr(adapter, "platform", adapter))
        if self.wakeups is not None:
            await asyncio.to_thread(self.wakeups.stop)
        if self.duties is not None:
            # Given up last, once nothing of ours sends any more: another replica takes over at its next try.
            try:
                await asyncio.wait_for(self.duties.stop(), STOP_BUDGET / 4)
            except Exception:
                log.exception("giving the duties up failed")


def make_adapters(parts, settings: Settings) -> list[Adapter]:
    adapters: list[Adapter] = []
    if settings.matrix is not None:
        from watchfloor.bot.matrix.adapter import MatrixAdapter

        adapters.append(MatrixAdapter(parts, settings.matrix, startup_wait=MATRIX_START_WAIT))
    if settings.slack is not None:
        slack = _optional("watchfloor.bot.slack.adapter")
        if slack is None:
            log.warning("[slack] is configured but this build has no Slack adapter; Slack is not served")
        else:
            adapters.append(slack.SlackAdapter(parts, settings.slack))
    if settings.email is not None:
        from watchfloor.bot.email.adapter import EmailAdapter

        adapters.append(EmailAdapter(settings.email))
    return adapters


def _optional(module: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            return None
        raise


def run_service(settings: Settings) -> int:
    configure_logging()
    logging.getLogger("nio").setLevel(logging.ERROR)
    try:
        return asyncio.run(_main(settings))
    except KeyboardInterrupt:
        return 0


async def _main(settings: Settings) -> int:
    from watchfloor.bot import metrics  # noqa: F401  (registers the telemetry listeners; CLI commands go without)
    from watchfloor.bot.wiring import build

    try:
        parts = await asyncio.to_thread(build, settings=settings)
    except Exception as e:
        log.error("cannot open the database: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    adapters = make_adapters(parts, settings)
    if not adapters:
        log.warning("no platform configured ([matrix], [slack] or [email]); only the scheduler runs")
    from watchfloor.bot.duties import Duties

    duties = Duties(parts.db)
    service = Service(parts, adapters, duties=duties)
    extras: list[tuple[str, Any]] = []
    code = 0


    async def starting() -> list[tuple[str, Any]]:
        # The scheduler and the AIS feed are duties too: attached before the duties' first round takes them.
        extras = _duty_extras(parts, settings, service.delivery, duties)
        await service.start()
        return extras + await _start_health(parts, adapters, settings, service.delivery, duties)

    # Start-up can wait on a homeserver that is slow to come up; SIGTERM meanwhile must still stop us in time.
    start_task = asyncio.create_task(starting())
    stop_task = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({start_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if start_task.done():
            extras = start_task.result()
            log.info("watchfloor running (%s)", ", ".join(a.platform for a in adapters) or "no platforms")
            await stop_task
        else:
            start_task.cancel()
            await asyncio.gather(start_task, return_exceptions=True)
        log.info("stopping")
    except Exception as e:
        log.error("cannot start: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
        code = 1
    finally:
        stop_task.cancel()
    try:
        await asyncio.wait_for(_stop_all(service, extras), STOP_BUDGET)
    except asyncio.TimeoutError:
        log.warning("stopping took too long; exiting anyway")
    parts.db.dispose()
    return code


def _duty_extras(parts, settings: Settings, delivery, duties) -> list[tuple[str, Any]]:
    """The scheduler and the AIS feed, each attached to its duty (bot/duties.py): they act once it is taken."""
    extras: list[tuple[str, Any]] = []
    scheduler = _optional("watchfloor.bot.scheduler")
    if scheduler is not None:
        jobs = scheduler.JobScheduler(parts, pictures_apart=True)  # a picture's drawing must not slow commands
        jobs.attach(duties)
        jobs.start()  # jobs scheduled now; they run only while the duty is held
        extras.append(("scheduler", jobs))
    if settings.ais.listen:  # before the health server: once /healthz answers, the feed is listening
        from watchfloor.bot.ais.feed import AisFeed

        feed = AisFeed(parts, settings.ais, wake=delivery.wake)
        feed.attach(duties)
        extras.append(("ais", feed))
    return extras


async def _start_health(parts, adapters, settings: Settings, delivery, duties) -> list[tuple[str, Any]]:
    health = _optional("watchfloor.bot.web.health")
    if health is None or not settings.service.port:
        return []
    return [("health", await health.start_health(parts, adapters, settings.service.port, settings.service.host,
                                                 delivery=delivery, duties=duties))]


async def _stop_all(service: Service, extras: list[tuple[str, Any]]) -> None:
    for name, thing in reversed(extras):
        try:
            if name == "scheduler":
                await asyncio.to_thread(thing.shutdown)
            else:
                await thing.cleanup()
        except Exception:
            log.exception("stopping the %s failed", name)
    await service.stop()
