"""Who may do what: one table for every command, not `if`s scattered through the handlers."""
from __future__ import annotations

from enum import Enum

from .directory import Sender
from .errors import PermissionDenied


class Need(Enum):
    ANYONE = "anyone"            # reading: any sender, even one in no agency
    MEMBER = "member"            # acting for one's agency
    OWNER_OR_SUPERVISOR = "own"  # the item's agency, or a supervisor of the zone
    SUPERVISOR = "supervisor"


RULES: dict[tuple[str, str | None], Need] = {
    ("op", "log"): Need.MEMBER,
    ("op", "list"): Need.ANYONE,
    ("op", "show"): Need.ANYONE,
    ("op", "update"): Need.OWNER_OR_SUPERVISOR,
    ("op", "cancel"): Need.OWNER_OR_SUPERVISOR,
    ("op", "done"): Need.OWNER_OR_SUPERVISOR,
    ("target", "nominate"): Need.MEMBER,
    ("target", "endorse"): Need.MEMBER,
    ("target", "update"): Need.OWNER_OR_SUPERVISOR,
    ("target", "assign"): Need.SUPERVISOR,
    ("target", "close"): Need.OWNER_OR_SUPERVISOR,
    ("target", "list"): Need.ANYONE,
    ("target", "show"): Need.ANYONE,
    ("conflicts", "list"): Need.ANYONE,
    ("conflicts", "all"): Need.ANYONE,
    ("conflicts", "ack"): Need.SUPERVISOR,
    ("conflicts", "resolve"): Need.SUPERVISOR,
    ("conflicts", "snooze"): Need.SUPERVISOR,
    ("brief", "now"): Need.MEMBER,
    ("brief", None): Need.MEMBER,
    ("zone", None): Need.ANYONE,
    ("help", None): Need.ANYONE,
    ("vessel", None): Need.ANYONE,
    ("arrivals", None): Need.ANYONE,
    ("watch", None): Need.ANYONE,
    ("watch", "list"): Need.ANYONE,
    ("watch", "on"): Need.SUPERVISOR,
    ("watch", "off"): Need.SUPERVISOR,
    ("handover", None): Need.MEMBER,
    ("handover", "now"): Need.MEMBER,
    ("cop", None): Need.ANYONE,  # a link shows what the sender may read anyway
}


def need_for(command: str, action: str | None) -> Need:
    return RULES.get((command, action), RULES.get((command, None), Need.SUPERVISOR))


def check(sender: Sender, command: str, action: str | None, owner_agency: str | None = None) -> None:
    """Raise PermissionDenied with a one-line reason unless the sender may run this command."""
    need = need_for(command, action)
    what = f"use '{command} {action}'" if action else f"use '{command}'"
    if need is Need.ANYONE:
        return
    if sender.agency is None:
        raise PermissionDenied(
            "permission", f"you are not a member of any agency, so you can read but not {what}; "
                          "ask your administrator to add you to your agency")
    if need is Need.MEMBER:
        return
    if need is Need.SUPERVISOR:
        if not sender.is_supervisor:
            raise PermissionDenied("permission", f"only a watch supervisor may {what}")
        return
    if owner_agency is not None and owner_agency != sender.agency and not sender.is_supervisor:
        raise PermissionDenied(
            "permission", f"this belongs to {owner_agency}; only {owner_agency} or a supervisor may change it")
