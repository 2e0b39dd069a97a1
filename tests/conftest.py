"""Test configuration shared by every test folder."""

from __future__ import annotations

import signal

from hypothesis import HealthCheck, settings

# The Ctrl+C tests need a deliverable SIGINT. A suite started in the background of a
# non-interactive shell (`nohup .ci/run &`) inherits SIGINT *ignored*, which Python keeps and
# passes on to every child through exec — the right behaviour for `labctl run` under nohup,
# and the wrong premise for those tests. Restoring Python's handler here gives the children
# the default disposition again.
signal.signal(signal.SIGINT, signal.default_int_handler)

settings.register_profile(
    "labctl", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("labctl")


def pytest_addoption(parser):  # type: ignore[no-untyped-def]
    """Real-instrument addresses for tests/drivers/test_hardware.py (skipped when absent)."""
    group = parser.getgroup("labctl hardware")
    group.addoption("--board-url", default=None, help="pyserial URL of a real test board")
    group.addoption("--smu-address", default=None, help="VISA address of a real SMU")
    group.addoption("--smu-type", default="Keithley2450", help="Keithley2450 or Keithley2600B")
    group.addoption("--pulsegen-address", default=None, help="VISA address of a real 33500B")
    group.addoption("--resistor-ohm", default=None, type=float,
                    help="a known resistor wired across the SMU's HI and LO (docs/bringup.md)")
