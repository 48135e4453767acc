"""What a failed Slack Web API call means for the message being sent: try it again later, give it up, or stop
sending to Slack altogether until an operator renews the token."""
from __future__ import annotations

from slack_sdk.errors import SlackApiError

from watchfloor.bot.adapter import PermanentSendError, PlatformAuthError, TransientSendError

# The token is not (or no longer) accepted: every message would fail the same way.
AUTH_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
# Slack's own trouble, not the message's: the same call may go through later.
TRANSIENT_ERRORS = {"ratelimited", "rate_limited", "service_unavailable", "fatal_error", "internal_error",
                    "request_timeout", "team_added_to_org"}


def classify(e: SlackApiError) -> Exception:
    status = getattr(e.response, "status_code", 200)
    error = e.response.get("error") if hasattr(e.response, "get") else None
    if error in AUTH_ERRORS:
        return PlatformAuthError(f"slack refused the bot token: {error}")
    if status == 429 or error in ("ratelimited", "rate_limited"):
        headers = e.response.headers or {}
        retry = headers.get("Retry-After") or headers.get("retry-after")
        try:
            retry_after = float(retry) if retry is not None else None
        except (TypeError, ValueError):
            retry_after = None
        return TransientSendError(f"slack rate limited ({error})", retry_after)
    if status >= 500 or error in TRANSIENT_ERRORS:
        return TransientSendError(f"slack answered {status} {error}")
    # channel_not_found, not_in_channel, is_archived, msg_too_long, invalid_blocks...: this message never goes.
    return PermanentSendError(f"slack refused: {error or status}")
