"""`config check` asks the homeserver whether the Matrix rooms cleared for LES are encrypted. Plain HTTP (no
nio): the CLI must start fast. Logging in with the password makes a throwaway device, removed by logging out."""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


def les_rooms(settings) -> list[str]:
    """The Matrix room ids configured with LES in their clearance."""
    return [r.id.split(":", 1)[1] for r in settings.room
            if r.id.startswith("matrix:") and "LES" in {getattr(m, "value", m) for m in r.clearance}]


def unencrypted_les_warning(room_id: str, config) -> str:
    if config.les_requires_encryption:
        return (f"room 'matrix:{room_id}' is cleared for LES but not encrypted: nothing marked LES is posted there "
                f"until it is (les_requires_encryption)")
    return f"room 'matrix:{room_id}' is cleared for LES but not encrypted: LES posted there travels unencrypted"


def homeserver_warnings(settings, timeout: float = 5.0) -> list[str]:
    """Warnings about LES rooms that are not encrypted; one line saying why if the homeserver cannot be asked."""
    config = settings.matrix
    rooms = les_rooms(settings) if config is not None else []
    if not rooms:
        return []
    base = config.homeserver.rstrip("/")

    def call(method: str, path: str, token: str | None = None, body: dict | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read() or b"{}")
            except ValueError:
                return e.code, {}

    out: list[str] = []
    try:
        logged_in = False
        if config.access_token is not None:
            token = config.access_token.get_secret_value()
        elif config.password is not None:
            status, data = call("POST", "/_matrix/client/v3/login", body={
                "type": "m.login.password", "identifier": {"type": "m.id.user", "user": config.user_id},
                "password": config.password.get_secret_value(), "initial_device_display_name": "config check"})
            if status != 200:
                return [f"matrix: cannot log in to check room encryption ({data.get('errcode', status)})"]
            token, logged_in = data["access_token"], True
        else:
            return []
        try:
            for rid in rooms:
                status, data = call("GET", f"/_matrix/client/v3/rooms/{urllib.parse.quote(rid, safe='')}"
                                           "/state/m.room.encryption/", token)
                if status == 404:
                    out.append(unencrypted_les_warning(rid, config))
                elif status != 200:
                    out.append(f"room 'matrix:{rid}': cannot tell whether it is encrypted "
                               f"({data.get('errcode', status)})")
        finally:
            if logged_in:
                call("POST", "/_matrix/client/v3/logout", token, {})
    except (urllib.error.URLError, OSError, ValueError) as e:
        return [f"matrix: {config.homeserver} did not answer ({getattr(e, 'reason', e)}); room encryption not checked"]
    return out
