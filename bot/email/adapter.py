"""Sending the outbox's e-mails through the configured SMTP relay (aiosmtplib): `smtp://` with STARTTLS required,
`smtps://` with TLS from the start; the user and password, when set, log in after it.

What the relay answers decides what delivery does with the row (bot/delivery.py):
- a 5xx for the address or the message: refused for good (PermanentSendError): logged, counted in
  `watchfloor_email_refused_total{code}`, never retried (a retry would be refused the same);
- a 4xx anywhere, a relay that does not answer or drops the connection: not now (TransientSendError), retried with
  backoff, the address's later mail waiting behind it;
- the relay refuses our login, our sender, or its certificate is not trusted: nothing can go until an operator acts
  (PlatformAuthError): the platform is down and one try a minute probes it.
A row carries the same Message-ID on every try (message.py), so mail sent again after an answer lost on the way
(the relay took it, then the connection dropped) is recognisable as the same message.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from datetime import UTC, datetime
from typing import Any

from watchfloor.config import EmailConfig

from watchfloor.bot import metrics
from watchfloor.bot.adapter import OnMessage, PermanentSendError, PlatformAuthError, TransientSendError
from watchfloor.bot.email.message import build_message, message_id

log = logging.getLogger("watchfloor.email")

# Sends at once: every address is its own room, so a briefing to fifty addresses would open fifty connections;
# relays limit the connections of one client.
MAX_CONNECTIONS = 4


class EmailAdapter:
    platform = "email"

    def __init__(self, config: EmailConfig, *, max_connections: int = MAX_CONNECTIONS):
        self.config = config
        self._slots = asyncio.Semaphore(max_connections)
        self._local_hostname: str | None = None

    async def start(self, on_message: OnMessage) -> None:
        """Nothing to receive: e-mail only sends."""

    async def stop(self) -> None:
        """Nothing to stop: each send opens and closes its own connection."""

    async def send(self, room: str, kind: str, payload: dict[str, Any], *, target_id: str | None = None,
                   reply_to_remote: str | None = None) -> str:
        """Send one outbox row to its address; returns the Message-ID (the row's remote id)."""
        address = room.split(":", 1)[1]
        created = datetime.fromisoformat(payload["outbox_created"]) if payload.get("outbox_created") else \
            datetime.now(UTC)
        if created.tzinfo is None:  # SQLite hands back naive UTC
            created = created.replace(tzinfo=UTC)
        msgid = message_id(payload["outbox_id"], created, self.config.sender)
        try:
            await self.send_message(build_message(self.config.sender, address, payload, msgid=msgid, date=created),
                                    address)
        except Refused as e:
            metrics.record_email_refused(e.code)
            log.warning("e-mail to %s refused for good (%s): %s", address, e.what, e)
            raise
        return msgid

    async def send_message(self, msg, address: str) -> None:
        """One message to one address, mapped to the adapter errors (see the module's docstring)."""
        import aiosmtplib

        async with self._slots:
            client = await self._connect()
            try:
                try:
                    await client.send_message(msg, recipients=[address])
                except aiosmtplib.SMTPRecipientsRefused as e:
                    first = e.recipients[0] if e.recipients else None
                    code, text = (first.code, first.message) if first else (550, str(e))
                    self._refused(address, code, text, "the address")
                except aiosmtplib.SMTPSenderRefused as e:
                    if e.code >= 500:
                        raise PlatformAuthError(f"the relay refuses the sender {e.sender}: {e.code} {e.message}")
                    raise TransientSendError(f"{e.code} {e.message}") from None
                except aiosmtplib.SMTPResponseException as e:  # DATA and the rest
                    self._refused(address, e.code, e.message, "the message")
                except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected, OSError) as e:
                    # The relay may have taken the message before the answer was lost.
                    raise TransientSendError(f"the relay stopped answering: {_short(e)}", ambiguous=True) from None
            finally:
                try:
                    await asyncio.wait_for(client.quit(), 5)
                except Exception:
                    client.close()

    async def healthy(self) -> bool:
        """The relay answers: connect (TLS, login), NOOP, QUIT."""
        try:
            client = await self._connect()
        except Exception:
            return False
        try:
            await client.noop()
            return True
        except Exception:
            return False
        finally:
            try:
                await asyncio.wait_for(client.quit(), 5)
            except Exception:
                client.close()

    # ------------------------------------------------------------------ inside

    async def _connect(self):
        """A connection ready to send: TLS up, logged in. Raises TransientSendError or PlatformAuthError."""
        import aiosmtplib

        c = self.config
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        password = c.password.get_secret_value() if c.password is not None else None
        client = aiosmtplib.SMTP(hostname=c.host, port=c.port, use_tls=c.tls == "tls",
                                 start_tls=c.tls == "starttls", cert_bundle=c.ca_file, timeout=c.timeout_seconds,
                                 local_hostname=self._local_hostname,
                                 username=c.user if c.user and password else None,
                                 password=password if c.user else None)
        try:
            await client.connect()
        except aiosmtplib.SMTPAuthenticationError as e:
            raise PlatformAuthError(f"the relay refuses our login: {e.code} {e.message}") from None
        except (ssl.SSLCertVerificationError, aiosmtplib.SMTPNotSupported) as e:
            raise PlatformAuthError(f"no trusted TLS with the relay: {_short(e)}") from None
        except aiosmtplib.SMTPException as e:
            cause = e.__cause__ or e.__context__
            if isinstance(cause, ssl.SSLCertVerificationError):
                raise PlatformAuthError(f"the relay's TLS certificate is not trusted: {_short(cause)}") from None
            raise TransientSendError(f"cannot reach the relay: {_short(e)}") from None
        except OSError as e:
            raise TransientSendError(f"cannot reach the relay: {_short(e)}") from None
        return client

    @staticmethod
    def _refused(address: str, code: int, text: str, what: str) -> None:
        """A refusal with a reply code: 5xx is for good (Refused: not retried), anything else later."""
        if code >= 500:
            raise Refused(code, what, f"{code} {_short(text)}")
        raise TransientSendError(f"{code} {_short(text)}")


class Refused(PermanentSendError):
    """The relay refused the address or the message for good (a 5xx reply)."""

    def __init__(self, code: int, what: str, reason: str):
        super().__init__(reason)
        self.code, self.what = code, what


def _short(e: Any) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]
