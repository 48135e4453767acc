"""The deconfliction rules' own settings: the only configuration the domain knows (no platform in sight)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConflictRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    same_vessel_hours: float = 6.0
    gap_horizon_hours: float = 24.0
    gap_min_endorsers: int = 2
    escalate_after_minutes: float = 15.0
    # Sooner, in a zone that keeps a watch (handover_times), when none of the conflict's agencies is on watch.
    escalate_unwatched_minutes: float = 5.0
    scan_every_minutes: float = 5.0
    max_operation_hours: float = 168.0
    max_radius_km: float = 200.0
    far_from_zone_km: float = 300.0
