"""The only error the grammar and the handlers raise for bad input: one line naming the field."""
from __future__ import annotations


class CommandError(Exception):
    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    @property
    def line(self) -> str:
        text = f"{self.field}: {self.reason}"
        return " ".join(text.split())  # always one line, whatever the input contained


class PermissionDenied(CommandError):
    """The sender's role or agency may not do this."""
