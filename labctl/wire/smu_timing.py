"""How long an SMU sweep point holds its level on the cell: the one on-time model that the
SMU drivers plan FORM pulses with and the virtual SMUs apply to the simulated chip.

A trigger-model sweep point of a Keithley 2450 or 2600B is source → delay → measure
(the "source-delay-measure" cycle; 2450 Reference Manual 2450-901-01, "Source delay",
Figure "settling and delay times"; 2600B Reference Manual 2600BS-901-01, "Triggering",
sweep timing). With the source level applied at the start of the point, its on-time is

    on = ((delay + auto_delay) + integration·(1 + 2·autozero)) + overhead + end_latency

* ``delay`` — the programmed source (sweep) delay. The 2450 accepts 0 or 50 µs–10 ks for a
  sweep delay (``:SOURce:SWEep:VOLTage:LIST`` / ``:LINear`` delay argument); the 2600B's
  ``smuX.source.delay`` is 0 or any positive time.
* ``auto_delay`` — the 2450's source auto-delay (``:SOURce:VOLTage:DELay:AUTO ON``, the
  \\*RST state), added by the instrument per measure range: 50 ms on 10 nA and 100 nA,
  3 ms on 1 µA, 2 ms on 10 µA, 1 ms on 100 µA and above (2450-901-01 Rev. B, p. 2-111,
  voltage-source autodelay table). The drivers switch it off before a FORM, so it is 0.
* ``integration`` — NPLC / line frequency; with autozero on the instrument also takes a
  reference and a zero reading per point (2450: ``:SENSe:CURRent:AZERo``; 2600B:
  ``smuX.measure.autozero``), modelled as two more integrations.
* ``overhead`` — A/D conversion and trigger-model step per point. Not in the manuals'
  tables: a stated estimate each driver carries, checked at bring-up (docs/bringup.md).
* ``end_latency`` — how long the level stays after the measurement before the source
  returns to 0 V: on the 2600B the end-pulse action ``SOURCE_IDLE`` happens in the trigger
  model (0); on the 2450, which has no end-pulse action, the ``:OUTP OFF`` that follows
  ``*WAI`` in the same message must still be parsed (an estimate, checked at bring-up).

The sum is evaluated in float64 in exactly the order written, by :func:`on_time_s` only;
:func:`form_delay_s` picks the delay whose on-time *is* the requested width bit for bit
(where float64 sums skip it, the nearest shorter one, at most 4 ulp ≈ 1e-19 s off), so a
simulated FORM pulse gets the width the caller asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from labctl.core.errors import EnvelopeViolation, RequestRejected


@dataclass(frozen=True)
class SmuTiming:
    """One SMU family's timing facts (see the module docstring for each term)."""

    model: str
    min_nplc: float
    max_nplc: float
    overhead_s: float
    end_latency_s: float
    min_nonzero_delay_s: float
    max_delay_s: float


KEITHLEY_2450 = SmuTiming(
    model="2450", min_nplc=0.01, max_nplc=10.0, overhead_s=50e-6, end_latency_s=100e-6,
    min_nonzero_delay_s=50e-6, max_delay_s=10e3)
"""2450: NPLC 0.01–10 (``:SENSe:CURRent:NPLCycles``); sweep delay 0 or 50 µs–10 ks."""

KEITHLEY_2600B = SmuTiming(
    model="2600B", min_nplc=0.001, max_nplc=25.0, overhead_s=50e-6, end_latency_s=0.0,
    min_nonzero_delay_s=0.0, max_delay_s=1e4)
"""2600B: NPLC 0.001–25 (``smuX.measure.nplc``); ``smuX.source.delay`` 0 or positive."""

AUTO_DELAY_2450_S = ((10e-9, 50e-3), (100e-9, 50e-3), (1e-6, 3e-3), (10e-6, 2e-3),
                     (100e-6, 1e-3), (1e-3, 1e-3), (10e-3, 1e-3), (100e-3, 1e-3),
                     (1.0, 1e-3))
"""(current measure range A, voltage-source auto-delay s), 2450-901-01 Rev. B p. 2-111."""


def auto_delay_2450_s(measure_range_A: float) -> float:
    """The 2450's voltage-source auto-delay on the smallest measure range ≥ ``measure_range_A``."""
    for rng, d in AUTO_DELAY_2450_S:
        if measure_range_A <= rng * (1 + 1e-9):
            return d
    return AUTO_DELAY_2450_S[-1][1]


def on_time_s(t: SmuTiming, delay_s: float, nplc: float, line_frequency_Hz: float, *,
              autozero: bool, auto_delay_s: float = 0.0) -> float:
    """Real on-time of one sweep point (module docstring); the one place it is computed."""
    t_int = nplc / line_frequency_Hz
    integration = t_int * 3.0 if autozero else t_int
    return (((delay_s + auto_delay_s) + integration) + t.overhead_s) + t.end_latency_s


def shortest_on_time_s(t: SmuTiming, line_frequency_Hz: float) -> float:
    """The shortest FORM point the SMU can make (zero delay, minimal NPLC, no autozero)."""
    return on_time_s(t, 0.0, t.min_nplc, line_frequency_Hz, autozero=False)


def form_delay_s(t: SmuTiming, width_s: float, line_frequency_Hz: float, max_on_s: float,
                 who: str = "SMU") -> float:
    """The source delay that makes a FORM point (minimal NPLC, autozero and auto-delay off)
    last exactly ``width_s``.

    Refused before anything is sent (``RequestRejected`` / ``EnvelopeViolation``): a width
    shorter than the shortest point, a width whose delay would fall in a gap the instrument
    cannot program (the 2450's 0–50 µs), and an on-time beyond the envelope's ``max_on_s``.
    Never approximated: a width the SMU cannot make is not made.
    """
    if not (math.isfinite(width_s) and width_s > 0):
        raise RequestRejected(f"{who}: FORM width must be a positive number of seconds, "
                              f"got {width_s!r}")
    if width_s > max_on_s:
        raise EnvelopeViolation("FORM on-time", f"≤ {max_on_s:g} s (max_width_s)",
                                f"{width_s:g} s")
    shortest = shortest_on_time_s(t, line_frequency_Hz)
    if width_s < shortest:
        raise RequestRejected(
            f"{who}: a FORM point on the {t.model} lasts at least {shortest:g} s (integration "
            f"NPLC {t.min_nplc:g} at {line_frequency_Hz:g} Hz + overhead {t.overhead_s:g} s "
            f"+ end latency {t.end_latency_s:g} s); width {width_s:g} s refused — use the "
            "board topology for shorter FORM pulses")
    d = max(0.0, width_s - shortest)
    for _ in range(64):  # walk the last bits until the model's own sum is exact
        on = on_time_s(t, d, t.min_nplc, line_frequency_Hz, autozero=False)
        if on == width_s:
            break
        d = max(0.0, math.nextafter(d, math.inf if on < width_s else -math.inf))
    while d > 0.0 and on_time_s(t, d, t.min_nplc, line_frequency_Hz, autozero=False) > width_s:
        d = math.nextafter(d, 0.0)  # where float sums skip the width: never longer than it
    on = on_time_s(t, d, t.min_nplc, line_frequency_Hz, autozero=False)
    if not 0.0 <= width_s - on <= 4.0 * math.ulp(width_s):
        raise RequestRejected(f"{who}: no {t.model} source delay gives an on-time of "
                              f"{width_s!r} s (closest {on!r} s); width refused")
    if 0.0 < d < t.min_nonzero_delay_s:
        raise RequestRejected(
            f"{who}: width {width_s:g} s needs a source delay of {d:g} s, which the {t.model} "
            f"cannot program (0 or ≥ {t.min_nonzero_delay_s:g} s); use a width of "
            f"{shortest:g} s or ≥ {shortest + t.min_nonzero_delay_s:g} s")
    if d > t.max_delay_s:
        raise RequestRejected(f"{who}: source delay {d:g} s beyond the {t.model}'s "
                              f"{t.max_delay_s:g} s")
    return d
