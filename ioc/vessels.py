"""Vessel identifiers: IMO numbers (with check digit), MMSI numbers and names."""
from __future__ import annotations

import re
from dataclasses import dataclass

_IMO = re.compile(r"^IMO\s?(\d+)$", re.IGNORECASE)


class VesselError(ValueError):
    pass


def imo_check_ok(digits: str) -> bool:
    if len(digits) != 7 or not digits.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(digits[:6], range(7, 1, -1)))
    return total % 10 == int(digits[6])


@dataclass(frozen=True)
class Vessel:
    kind: str  # "imo", "mmsi" or "name"
    value: str

    @property
    def key(self) -> str:
        """Identity used to match targets and operations on the same vessel."""
        return f"{self.kind}:{self.value.upper() if self.kind == 'name' else self.value}"

    @property
    def is_identified(self) -> bool:
        """IMO and MMSI are shared identifiers; names are not reliable enough for same-vessel conflicts."""
        return self.kind in ("imo", "mmsi")

    def __str__(self) -> str:
        if self.kind == "imo":
            return f"IMO{self.value}"
        return self.value

    @classmethod
    def from_key(cls, key: str) -> "Vessel":
        kind, _, value = key.partition(":")
        return cls(kind, value)


def parse_vessel(raw: str, quoted: bool = False) -> Vessel:
    value = raw.strip()
    if not value:
        raise VesselError("must not be empty")
    if not quoted:
        m = _IMO.match(value)
        if m:
            digits = m.group(1)
            if len(digits) != 7:
                raise VesselError("IMO number must be IMO followed by 7 digits")
            if not imo_check_ok(digits):
                raise VesselError(f"IMO{digits} has a wrong check digit")
            return Vessel("imo", digits)
        if value.isdigit():
            if len(value) == 7 and imo_check_ok(value):
                # IMO numbers are often copied without their prefix; the check digit makes the guess safe
                raise VesselError(f"{value} looks like an IMO number; write it IMO{value}")
            if len(value) != 9:
                raise VesselError("MMSI must be 9 digits")
            return Vessel("mmsi", value)
    if len(value) > 80:
        raise VesselError("name is longer than 80 characters")
    return Vessel("name", " ".join(value.split()))
