"""Test configuration shared by every test folder."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "labctl", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("labctl")
