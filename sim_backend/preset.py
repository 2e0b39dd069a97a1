"""Physics and periphery parameters of the simulated 1T1R macro, as documented dataclasses.

Each field states its unit and where its default comes from. Sources (full references in
``docs/references.md``; the one table of assumptions is in ``docs/simulator.md``):

- [Wan22] Wan et al., "A compute-in-memory chip based on resistive random-access memory",
  Nature 608, 504 (2022) — NeuRRAM programming settings and window.
- [AIHW-Wan] IBM AIHWKit ``ReRamWan2022NoiseModel`` — spread after write-verify vs G and t.
- [AIHW-CMO] IBM AIHWKit ``ReRamCMONoiseModel`` — mean relaxation −0.089·ln t µS.
- [Stanford] NI-RRAM-Python controller settings (read/SET/RESET/FORM).
- [HKU] HKU 40 nm arrays: as-formed conductance N(14.25, 2.46) µS; 2 % read noise in sims.
- [Li18] Li et al., Nat. Electron. 1, 52 (2018): 99.8 % yield (abstract).
- [AIHW-IO] AIHWKit IO defaults: 7-bit in, 9-bit out, output noise 0.06, wire 0.15–0.35 Ω.
- [Ielmini] Ielmini, "Resistive switching memories based on metal oxides", Semicond. Sci.
  Technol. 31, 063002 (2016): LRS resistance set by compliance, R ≈ V_set / I_C.
- [Ambrogio15] Ambrogio et al., "Noise-induced resistance broadening in resistive switching
  memory — Part I", IEEE TED 62, 3805 (2015), doi 10.1109/TED.2015.2475598: RRAM read
  current carries 1/f and random-telegraph noise that averaging cannot remove.
- [Hooge69] Hooge, "1/f noise is no surface effect", Phys. Lett. A 29, 139 (1969),
  doi 10.1016/0375-9601(69)90076-0: S_I/I² = α_H/(N·f), relative noise ∝ 1/√N.
- [ESGNN] HKU group's measured 400-read trace (ESGNN data): 3.3 % σ of single reads.

Values marked *assumption* are not published figures for this macro; they are chosen so the
behaviour falls in the published ranges above, and they are exposed as configuration so a
model fitted to a real chip (``calibration`` fitting → preset file) replaces them.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any, cast

from labctl.core.errors import ConfigError

uS = 1e-6


def _check(section: str, obj: object, rules: dict[str, tuple[str, object]]) -> None:
    """Validate fields of a parameter dataclass: rule is (kind, bound) with kind one of
    'pos' (> 0), 'nonneg' (≥ 0), 'rate' (in [0, 1]), 'int' (integer in [lo, hi]).
    Every float must be finite. Raises ConfigError naming section.field."""
    for f in fields(obj):  # type: ignore[arg-type]
        v = getattr(obj, f.name)
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError("preset", f"{section}.{f.name}", f"must be finite, got {v!r}")
    for name, (kind, bound) in rules.items():
        v = getattr(obj, name)
        key = f"{section}.{name}"
        if kind == "pos" and not v > 0:
            raise ConfigError("preset", key, f"must be > 0, got {v!r}")
        if kind == "nonneg" and not v >= 0:
            raise ConfigError("preset", key, f"must be ≥ 0, got {v!r}")
        if kind == "rate" and not 0 <= v <= 1:
            raise ConfigError("preset", key, f"must be in [0, 1], got {v!r}")
        if kind == "int":
            lo, hi = cast(tuple[int, int], bound)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError("preset", key, f"must be an integer in [{lo}, {hi}], got {v!r}")


def _all(kind: str, *names: str) -> dict[str, tuple[str, object]]:
    return {n: (kind, None) for n in names}


@dataclass(frozen=True)
class TransistorParams:
    """Access NMOS in saturation: I_sat = ½·β·(V_gate − V_th)² (square law).

    The gate voltage is the SET compliance in a 1T1R cell [Wan22, Stanford].
    """

    v_th_V: float = 0.7
    """Threshold voltage, V. *assumption*: typical 180 nm thick-oxide NMOS."""
    beta_A_per_V2: float = 10.2e-6
    """Transconductance factor β = µCox·W/L, A/V². *assumption*: chosen so gate 1.0–2.7 V
    spans the 1–40 µS window (40 µS at 2.68 V) through the compliance relation below,
    matching the NeuRRAM SET gate range 2.5–3.0 V for the top of the window [Wan22]."""
    v_hold_V: float = 0.5
    """Voltage across a just-SET filament, V: G_LRS ≈ I_C / v_hold [Ielmini]."""

    def __post_init__(self) -> None:
        _check(
            "transistor",
            self,
            {**_all("nonneg", "v_th_V"), **_all("pos", "beta_A_per_V2", "v_hold_V")},
        )


@dataclass(frozen=True)
class SwitchingParams:
    """Forming, SET and RESET kinetics (exponential voltage–time dependence).

    Per pulse, the switched fraction is p = 1 − exp(−gain · exp((V − V_th)/V0) · width/t_ref),
    the usual voltage–time relation of filamentary switching (Ielmini). SET moves G a
    fraction p toward the compliance cap; RESET moves it a fraction p toward the HRS floor,
    so RESET is gradual in amplitude [Wan22 ramps RESET 0.1 V per pulse].
    """

    form_V_mean: float = 2.8
    """Mean forming threshold on the bit line, V. *assumption*: below the 3.3 V forming
    bit line of [Stanford]."""
    form_V_sigma: float = 0.12
    """Device-to-device σ of the forming threshold, V. *assumption*."""
    form_V0: float = 0.1
    """Forming voltage acceleration, V per e-fold. *assumption*."""
    form_t_ref_s: float = 1e-3
    """Forming reference time: at threshold, a pulse of this width forms with p ≈ 63 %."""
    form_current_mean_A: float = 3e-6
    """Mean current the access transistor must pass for forming to complete, A.
    *assumption*: a filament only forms when enough current flows to grow it, so a gate held
    too low fails to form the cell — why forming ramps the gate up from 1.3 V [Stanford]
    and stops each cell as it forms. With the default transistor the gate ramp (1.3 V +
    0.05 V steps) forms 95 % of cells between 1.30 and 1.70 V, and the gate then caps the
    as-formed conductance near I_form / v_hold (6.6 ± 3.7 µS read after the ramp,
    ``tests/sim_backend/test_device.py``), not the [HKU] figure below (docs/simulator.md)."""
    form_current_sigma_A: float = 1e-6
    """Device-to-device σ of that minimum forming current, A. *assumption*."""
    overform_current_A: float = 70e-6
    """Compliance above which forming hard-breaks the cell (stuck at LRS), A. *assumption*:
    why forming ramps the gate gently [Stanford, docs/references.md]."""
    as_formed_mean_S: float = 14.25 * uS
    """As-formed conductance mean when the gate does not cap it, S [HKU]. Under a gentle gate
    ramp the compliance caps it first (see ``form_current_mean_A``)."""
    as_formed_sigma_S: float = 2.46 * uS
    """As-formed conductance σ, S [HKU]."""
    set_V_mean: float = 1.3
    """Mean SET threshold (bit line), V. *assumption*: NeuRRAM SET ramps from 1.2 V [Wan22]."""
    set_V_sigma: float = 0.08
    """Device-to-device σ of the SET threshold, V. *assumption*: small against the 0.1 V
    per-pulse ramp step of [Wan22], so a ramp reaches every cell's threshold."""
    set_V0: float = 0.15
    """SET voltage acceleration, V per e-fold. *assumption*."""
    set_gain: float = 0.08
    """Switched fraction per t_ref at threshold. *assumption*."""
    reset_V_mean: float = 1.1
    """Mean RESET threshold (source line), V. *assumption*: NeuRRAM RESET ramps from 1.2 V."""
    reset_V_sigma: float = 0.08
    """Device-to-device σ of the RESET threshold, V. *assumption*: as ``set_V_sigma``."""
    reset_V0: float = 0.15
    """RESET voltage acceleration, V per e-fold. *assumption*: as ``set_V0`` (symmetric
    kinetics; no published figure for this macro)."""
    reset_gain: float = 0.08
    """RESET switched fraction per t_ref at threshold. *assumption*: as ``set_gain``."""
    t_ref_s: float = 1e-6
    """Reference width of the SET/RESET kinetics, s (NeuRRAM widths 100 ns–1 µs)."""
    gain_d2d_sigma: float = 0.25
    """Log-normal device-to-device σ of the SET/RESET gains. *assumption*."""
    step_c2c_sigma: float = 0.35
    """Log-normal cycle-to-cycle σ of each switched fraction. *assumption*."""
    cap_d2d_sigma: float = 0.05
    """Device-to-device relative σ of the compliance cap (transistor mismatch). *assumption*."""
    cap_c2c_sigma: float = 0.04
    """Cycle-to-cycle relative σ of the compliance cap. *assumption*."""
    hrs_mean_S: float = 0.5 * uS
    """HRS floor conductance after a full RESET, S. *assumption*: below g_min = 1 µS [Wan22]."""
    hrs_sigma_S: float = 0.1 * uS
    """Device-to-device σ of the HRS floor, S. *assumption*: 20 % of ``hrs_mean_S``."""
    switch_threshold_rel: float = 1e-3
    """A pulse that changes G by less than this fraction of G did not switch the cell: its
    relaxation walk goes on undisturbed. *assumption*: far below the read noise, so no
    measurable switching is missed."""
    pristine_S: float = 0.01 * uS
    """Conductance of an unformed cell, S: it conducts ~nothing until formed."""

    def __post_init__(self) -> None:
        _check(
            "switching",
            self,
            {
                **_all(
                    "pos",
                    "form_V0",
                    "form_t_ref_s",
                    "overform_current_A",
                    "form_current_mean_A",
                    "as_formed_mean_S",
                    "set_V0",
                    "set_gain",
                    "reset_V0",
                    "reset_gain",
                    "t_ref_s",
                    "hrs_mean_S",
                    "pristine_S",
                ),
                **_all(
                    "nonneg",
                    "form_V_mean",
                    "form_current_sigma_A",
                    "form_V_sigma",
                    "as_formed_sigma_S",
                    "set_V_mean",
                    "set_V_sigma",
                    "reset_V_mean",
                    "reset_V_sigma",
                    "gain_d2d_sigma",
                    "step_c2c_sigma",
                    "cap_d2d_sigma",
                    "cap_c2c_sigma",
                    "hrs_sigma_S",
                ),
                "switch_threshold_rel": ("rate", None),
            },
        )


@dataclass(frozen=True)
class FaultParams:
    """Stuck and unformable cells, rates per cell. Mature process ≈ 0.2 % [Li18]; research
    arrays 10–13 % (AIHWKit presets fitted to IEDM 2022 arrays)."""

    stuck_lrs_rate: float = 0.002
    stuck_hrs_rate: float = 0.002
    unformable_rate: float = 0.002
    stuck_lrs_mean_S: float = 60 * uS
    """Conductance of a stuck-at-LRS cell, S. *assumption*: above the window."""
    stuck_lrs_sigma_S: float = 10 * uS
    """Device-to-device σ of the stuck-at-LRS conductance, S. *assumption*."""

    def __post_init__(self) -> None:
        _check(
            "faults",
            self,
            {
                **_all("rate", "stuck_lrs_rate", "stuck_hrs_rate", "unformable_rate"),
                **_all("pos", "stuck_lrs_mean_S"),
                **_all("nonneg", "stuck_lrs_sigma_S"),
            },
        )
        if self.stuck_lrs_rate + self.stuck_hrs_rate + self.unformable_rate > 1:
            raise ConfigError("preset", "faults", "the fault rates add up to more than 1")


@dataclass(frozen=True)
class RelaxationParams:
    """Post-programming relaxation as a persistent per-cell random walk in
    τ = ln(1 + Δt/t0) (docs/references.md), plus a deterministic mean shift.

    The walk's variance rate r(G) and time origin t0(G) are solved at each tabulated level
    so that σ_total² = σ_prog² + r·τ reproduces the [AIHW-Wan] spread at 1 s and at 1 day,
    where σ_prog is the spread left by write-verify (the ±1 µS NeuRRAM band, uniform:
    1/√3 µS). The walk is evaluated on a grid of τ, so between grid points the conductance
    is constant, and repeated reads of one cell are correlated through it.
    """

    table_G_S: tuple[float, ...] = (0.0, 5 * uS, 10 * uS, 20 * uS, 30 * uS, 40 * uS)
    sigma_1s_S: tuple[float, ...] = (
        0.35 * uS,
        1.75 * uS,
        2.26 * uS,
        2.02 * uS,
        1.53 * uS,
        1.10 * uS,
    )
    """Spread at 1 s after write-verify, S [AIHW-Wan]."""
    sigma_1day_S: tuple[float, ...] = (
        0.70 * uS,
        2.76 * uS,
        3.72 * uS,
        3.91 * uS,
        3.37 * uS,
        2.65 * uS,
    )
    """Spread at 1 day after write-verify, S [AIHW-Wan]."""
    sigma_prog_S: float = 0.577 * uS
    """Spread write-verify leaves at t = 0 in the fitted data: ±1 µS band, uniform [Wan22]."""
    sigma_prog_max_fraction: float = 0.8
    """σ_prog used at a level is at most this fraction of the tabulated σ(1 s) there (at
    0 µS the table's 0.35 µS is below the ±1 µS band's 0.577 µS). *assumption*: leaves
    (1 − 0.8²) of the 1 s variance to the walk."""
    accept_delay_s: float = 1e-3
    """Time from a cell's last programming pulse to the read that accepted it, in the data
    the table was fitted to, s: the table's times count from acceptance, the walk from the
    pulse. *assumption*: ≈ two read batches and a pulse batch of a batched verify-write of
    256 rows (the simulated one); NeuRRAM does not publish it."""
    floor_S: float = 0.1 * uS
    """A relaxing cell's conductance never falls below this, S. *assumption*: 20 % of the
    HRS floor ``switching.hrs_mean_S``; it truncates the walk's left tail at low levels."""
    mean_shift_S_per_ln_t: float = -0.089 * uS
    """Mean drift per e-fold of time (t in s, from 1 s), S [AIHW-CMO]."""
    mean_shift_full_above_S: float = 8 * uS
    """The [AIHW-CMO] fit covers 8–90 µS; below this the mean shift scales ∝ G to 0."""
    tau_max: float = 32.0
    """Largest τ the walk is defined on; later times hold at τ_max."""
    grid_levels: int = 10
    """The walk is built on 2**grid_levels points over [0, τ_max] by a Brownian bridge."""

    def __post_init__(self) -> None:
        _check(
            "relaxation",
            self,
            {
                **_all("nonneg", "sigma_prog_S", "mean_shift_full_above_S", "floor_S",
                       "accept_delay_s"),
                **_all("pos", "tau_max"),
                "sigma_prog_max_fraction": ("rate", None),
                "grid_levels": ("int", (1, 20)),
            },
        )
        g, s1, sd = self.table_G_S, self.sigma_1s_S, self.sigma_1day_S
        if not len(g) == len(s1) == len(sd) or len(g) < 2:
            raise ConfigError(
                "preset",
                "relaxation.table_G_S",
                "table_G_S, sigma_1s_S and sigma_1day_S need one length ≥ 2",
            )
        if any(b <= a for a, b in itertools.pairwise(g)):
            raise ConfigError("preset", "relaxation.table_G_S", "must be strictly increasing")
        if any(not (0 < a <= b) for a, b in zip(s1, sd, strict=True)):
            raise ConfigError(
                "preset",
                "relaxation.sigma_1day_S",
                "spreads must be > 0 and not shrink from 1 s to 1 day",
            )


@dataclass(frozen=True)
class ReadParams:
    """Read noise: white (independent per read, averages away as 1/√n) plus a stationary
    low-frequency part with a 1/f spectrum between 1/``lf_tau_max_s`` and 1/``lf_tau_min_s``
    [Ambrogio15], which consecutive reads share and averaging cannot remove.

    The low-frequency part is a sum of one component per decade of time scale τ, each a
    per-cell level redrawn every τ (random phase per cell): a superposition of Lorentzians
    with log-spaced corners, the textbook construction of a 1/f spectrum. Its relative σ
    scales as (G / ``lf_ref_G_S``)^(−``lf_g_exponent``): Hooge's S_I/I² ∝ 1/N with N ∝ G
    [Hooge69], and Ambrogio et al.'s finding that relative noise rises with resistance.
    """

    relative_sigma: float = 0.015
    """White read noise σ as a fraction of G per read: 1–2 % (AIHWKit RRAM docstring ~1 %,
    HKU 2 %)."""
    floor_sigma_S: float = 0.005 * uS
    """Additive white read-noise floor, S. *assumption*: measurement floor of a 0.2 V read."""
    lf_relative_sigma: float = 0.0294
    """σ of the low-frequency part as a fraction of G at ``lf_ref_G_S``. Chosen so that white
    and low-frequency together give the 3.3 % of the measured 400-read trace [ESGNN]:
    √(1.5² + 2.94²) = 3.3 %. *assumption*: the trace spans the low-frequency decades (its
    read spacing is not published), and the white part keeps the AIHWKit/HKU 1.5 %."""
    lf_ref_G_S: float = 20 * uS
    """Conductance at which ``lf_relative_sigma`` holds, S. *assumption*: mid-window (the
    trace's level is not published)."""
    lf_g_exponent: float = 0.5
    """Relative low-frequency σ ∝ G^−exponent: 0.5 from Hooge's 1/N with N ∝ G [Hooge69]."""
    lf_tau_min_s: float = 1e-4
    """Shortest time scale of the low-frequency part, s. *assumption*."""
    lf_tau_max_s: float = 1e3
    """Longest time scale of the low-frequency part, s. *assumption*: beyond it the level
    wander is relaxation's (``RelaxationParams``), not noise."""

    def __post_init__(self) -> None:
        _check(
            "read",
            self,
            {
                **_all("nonneg", "relative_sigma", "floor_sigma_S", "lf_relative_sigma",
                       "lf_g_exponent"),
                **_all("pos", "lf_ref_G_S", "lf_tau_min_s", "lf_tau_max_s"),
            },
        )
        if self.lf_tau_max_s < self.lf_tau_min_s:
            raise ConfigError("preset", "read.lf_tau_max_s", "must not be below lf_tau_min_s")

    @property
    def lf_taus_s(self) -> tuple[float, ...]:
        """Time scale of each low-frequency component: one per decade, both ends included."""
        lo, hi = math.log10(self.lf_tau_min_s), math.log10(self.lf_tau_max_s)
        n = max(1, round(hi - lo) + 1)
        return tuple(10 ** (lo + (hi - lo) * k / max(n - 1, 1)) for k in range(n))


@dataclass(frozen=True)
class PeripheryParams:
    """DAC / ADC and array wiring for MVM."""

    dac_bits: int = 8
    """Signed DAC resolution (7–8 bit typical; AIHWKit 7-bit in) [AIHW-IO]."""
    adc_bits: int = 9
    """Signed ADC resolution (5–9 bit; AIHWKit 9-bit out) [AIHW-IO]."""
    mvm_input_max_V: float = 0.2
    """DAC full scale on a row, V (verify-read level of [Wan22])."""
    adc_range_A: float = 100e-6
    """Default ADC full scale ±, A. Calibration sets a better one per layer."""
    output_noise_rel: float = 0.06
    """Output-referred periphery noise σ in units of one full-scale cell current
    (g_max × DAC full scale): AIHWKit ``out_noise`` 0.06 in its normalised units [AIHW-IO]."""
    ir_drop: bool = True
    """Model IR drop on rows and columns (first-order, see ``periphery``): on by default,
    since an all-on 256-row block reads ≈ 20 % high without it."""
    wire_ohm_per_cell: float = 0.35
    """Wire resistance per cell segment, Ω (AIHWKit range 0.15–0.35; worst case) [AIHW-IO]."""
    noise_pool_size: int = 1 << 22
    """Size of the seeded pool of normals MVM output noise is drawn from."""
    mvm_snapshot_rel: float = 0.03
    """MVMs use a snapshot of the array's conductances, retaken after a pulse and once the
    clock has moved by this fraction of the age of the tile's youngest relaxing cell (or
    past the next step of every cell's walk, whichever is later). 0.03 ≈ e^Δτ − 1, one step
    of the relaxation walk's τ grid: the snapshot is as fine in time as the walk itself.
    *assumption* of the model, not of a chip."""

    def __post_init__(self) -> None:
        _check(
            "periphery",
            self,
            {
                "dac_bits": ("int", (2, 24)),
                "adc_bits": ("int", (2, 24)),
                "noise_pool_size": ("int", (1 << 16, 1 << 28)),
                **_all("pos", "mvm_input_max_V", "adc_range_A"),
                **_all("nonneg", "output_noise_rel", "wire_ohm_per_cell", "mvm_snapshot_rel"),
            },
        )


@dataclass(frozen=True)
class EnergyParams:
    """Energy and latency assumptions of the ledger. All *assumptions* of order-of-magnitude
    for a 180 nm macro unless noted; the ledger reports what these imply, not a measurement."""

    line_cap_F_per_cell: float = 1e-15
    """Bit/source-line capacitance per cell on the line, F (≈1 fF: wire + junction)."""
    pulse_overhead_s: float = 50e-9
    """Driver settling added to each pulse, s."""
    read_time_s: float = 1e-6
    """Integration time of one verify read, s."""
    dac_energy_J: float = 0.1e-12
    """Energy per DAC conversion (per row per input vector), J."""
    adc_fom_J_per_step: float = 50e-15
    """ADC Walden figure of merit, J per conversion step (E = FOM·2^bits): typical SAR."""
    mvm_integration_s: float = 100e-9
    """Array integration time per MVM input vector, s."""
    adc_conversion_s: float = 100e-9
    """ADC conversion time, s (one ADC per column, parallel)."""
    # The three timings above and ``pulse_overhead_s`` are also what the running virtual
    # clock advances by (``sim_backend.timing``).

    def __post_init__(self) -> None:
        _check("energy", self, _all("nonneg", *(f.name for f in fields(self))))


@dataclass(frozen=True)
class ArrayParams:
    n_tiles: int = 8
    """Tiles in the macro."""
    n_rows: int = 256
    n_cols: int = 512
    """Columns per tile: 512 holds a 256-wide weight matrix as differential pairs."""
    g_min_S: float = 1e-6
    """Bottom of the programmable window, S [Wan22]."""
    g_max_S: float = 40e-6
    """Top of the programmable window, S [Wan22]."""
    read_V: float = 0.2
    """Default verify-read voltage, V [Wan22: 0.1–0.2 V; Stanford 0.2 V]."""
    read_gate_V: float = 2.5
    """Default read gate voltage, V [Stanford]."""

    def __post_init__(self) -> None:
        _check(
            "array",
            self,
            {
                "n_tiles": ("int", (1, 1024)),
                "n_rows": ("int", (1, 8192)),
                "n_cols": ("int", (2, 8192)),
                **_all("pos", "g_min_S", "g_max_S", "read_V"),
                **_all("nonneg", "read_gate_V"),
            },
        )
        if not self.g_min_S < self.g_max_S:
            raise ConfigError("preset", "array.g_max_S", "must be above g_min_S")


@dataclass(frozen=True)
class Preset:
    """Everything that defines a simulated macro except the seed."""

    name: str = "default_180nm"
    description: str = ""
    array: ArrayParams = field(default_factory=ArrayParams)
    transistor: TransistorParams = field(default_factory=TransistorParams)
    switching: SwitchingParams = field(default_factory=SwitchingParams)
    faults: FaultParams = field(default_factory=FaultParams)
    relaxation: RelaxationParams = field(default_factory=RelaxationParams)
    read: ReadParams = field(default_factory=ReadParams)
    periphery: PeripheryParams = field(default_factory=PeripheryParams)
    energy: EnergyParams = field(default_factory=EnergyParams)
    relaxation_on: bool = True
    variation_on: bool = True
    """Device-to-device and cycle-to-cycle variation."""

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "preset") -> Preset:
        try:
            preset: Preset = _from_plain(cls, data, source, "")
        except ConfigError as e:
            if e.source == source:
                raise
            raise ConfigError(source, e.key, e.problem) from None
        return preset

    def with_changes(self, **sections: dict[str, Any]) -> Preset:
        """A copy with fields of named sections replaced, e.g.
        ``p.with_changes(periphery={"ir_drop": True})``."""
        changes: dict[str, Any] = {}
        for name, values in sections.items():
            current = getattr(self, name)
            if is_dataclass(current) and not isinstance(current, type):
                changes[name] = replace(current, **values)
            else:
                changes[name] = values
        return replace(self, **changes)


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return [_to_plain(v) for v in obj]
    return obj


def _from_plain(cls: Any, data: Any, source: str, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(source, prefix or "(top level)", "must be a mapping")
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    defaults = cls()
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(source, path, f"unknown key; allowed: {', '.join(known)}")
        default = getattr(defaults, key)
        if is_dataclass(default):
            kwargs[key] = _from_plain(type(default), value, source, path + ".")
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(source, path, f"must be true or false, got {value!r}")
            kwargs[key] = value
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(source, path, f"must be an integer, got {value!r}")
            kwargs[key] = value
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(source, path, f"must be a number, got {value!r}")
            kwargs[key] = float(value)
        elif isinstance(default, tuple):
            if not isinstance(value, list | tuple) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value
            ):
                raise ConfigError(source, path, "must be a list of numbers")
            kwargs[key] = tuple(float(v) for v in value)
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise ConfigError(source, path, f"must be a string, got {value!r}")
            kwargs[key] = value
        else:  # pragma: no cover - every field type is listed above
            raise ConfigError(source, path, "unsupported field type")
    return cls(**kwargs)
