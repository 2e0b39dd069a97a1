"""A wafer of simulated dies: where each die sits and how its macro differs from the mean.

Device work is statistics over dies, and dies differ in a structured way: variation is
hierarchical — lot, wafer, die, cell — and the die level has both a random part and a
systematic pattern across the wafer (manufacturing variability of HfOx RRAM characterised at
lot, wafer and chip level: arXiv:1509.00070, IEEE IMW 2015, doi:10.1109/IMW.2015.7150290).
The cell level is the simulator's own device-to-device and cycle-to-cycle variation; this
module adds the die level on top.

Model. A die at (x, y) on a wafer of radius R, with ρ = r/R and u = (x cos θ + y sin θ)/R:

- Oxide thickness factor t = 1 + a_rad·ρ² + a_lin·u + ε_t,  ε_t ~ N(0, σ_t). Deposited
  films vary radially and with a tilt across the wafer; ρ² is the lowest-order radially
  symmetric profile, u the lowest-order tilt.
- Forming threshold: ``switching.form_V_mean`` × t. The forming voltage of stoichiometric
  HfO2 grows linearly with the layer thickness (abstract of S. U. Sharath et al., "Thickness
  independent reduced forming voltage in oxygen engineered HfO2 based resistive switching
  memories", Appl. Phys. Lett., 2014).
- Access transistor: ``transistor.v_th_V`` + b_rad·ρ² + ε_V and ``beta_A_per_V2`` × (1 + ε_β),
  the die-level part of CMOS process variation; the gate-limited SET compliance, and so
  every programmed conductance, goes through them.
- Faults: each fault rate × (1 + (k_edge − 1)·ρ⁴) × exp(ε_f), ε_f ~ N(0, σ_f): defect density
  rises toward the wafer edge (the usual edge ring of yield maps), and die yields scatter
  log-normally.

Every die's numbers are drawn from one stream keyed by the campaign seed and the die's
index, so the same seed gives the same wafer whatever the number of workers, and each die's
chip seed (its cells' randomness) is an independent child of that seed.

Stated assumptions (no published figure for this macro; exposed as :class:`WaferModel`
fields, so a wafer fitted to measurements replaces them):

==========================  ==========  ====================================================
field                       default     why
==========================  ==========  ====================================================
``diameter_mm``             200         180 nm logic is run on 200 mm wafers
``edge_exclusion_mm``       3           typical edge exclusion of a 200 mm process
``thickness_radial``        +0.03       3 % thicker at the edge than at the centre
``thickness_linear``        0.01        1 % tilt from one side to the centre
``thickness_sigma``         0.01        1 % die-to-die random thickness
``vth_radial_V``            0.010       10 mV higher threshold at the edge
``vth_sigma_V``             0.015       15 mV die-to-die threshold σ
``beta_sigma``              0.02        2 % die-to-die transconductance σ
``fault_edge_factor``       2           edge dies twice the centre's fault rate
``fault_sigma``             0.3         log-normal σ of a die's fault rates
==========================  ==========  ====================================================
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from labctl.core.errors import ConfigError
from sim_backend.preset import Preset

WAFER_STREAM = 0x57AF
"""Spawn key of the die-to-die draws, apart from the dies' chip seeds."""


@dataclass(frozen=True)
class WaferModel:
    """Wafer geometry and the die-level spread and gradients (see the module docstring)."""

    diameter_mm: float = 200.0
    edge_exclusion_mm: float = 3.0
    die_pitch_mm: float | None = None
    """Die pitch, mm; ``None``: the largest pitch at which the requested dies fit, so a few
    dies still sample the whole wafer."""
    gradient_angle_deg: float = 0.0
    """Direction θ of the linear gradient (0: increasing toward +x)."""
    thickness_radial: float = 0.03
    thickness_linear: float = 0.01
    thickness_sigma: float = 0.01
    vth_radial_V: float = 0.010
    vth_sigma_V: float = 0.015
    beta_sigma: float = 0.02
    fault_edge_factor: float = 2.0
    fault_sigma: float = 0.3

    def __post_init__(self) -> None:
        for name, v in asdict(self).items():
            if v is not None and not math.isfinite(v):
                raise ConfigError("wafer", name, f"must be finite, got {v!r}")
        for name in ("diameter_mm",):
            if not getattr(self, name) > 0:
                raise ConfigError("wafer", name, "must be > 0")
        for name in ("edge_exclusion_mm", "thickness_sigma", "vth_sigma_V", "beta_sigma",
                     "fault_sigma"):
            if not getattr(self, name) >= 0:
                raise ConfigError("wafer", name, "must be ≥ 0")
        if not 2 * self.edge_exclusion_mm < self.diameter_mm:
            raise ConfigError("wafer", "edge_exclusion_mm", "leaves no usable wafer")
        if self.die_pitch_mm is not None and not self.die_pitch_mm > 0:
            raise ConfigError("wafer", "die_pitch_mm", "must be > 0 (or null: fit the dies)")
        if not self.fault_edge_factor > 0:
            raise ConfigError("wafer", "fault_edge_factor", "must be > 0")

    @property
    def usable_radius_mm(self) -> float:
        return self.diameter_mm / 2 - self.edge_exclusion_mm

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Die:
    """One simulated die: its place, its chip seed and how its preset differs."""

    index: int
    x_mm: float
    y_mm: float
    seed: int
    overrides: dict[str, dict[str, float]]
    """Preset section → field → this die's value (absolute, not a change)."""

    @property
    def radius_mm(self) -> float:
        return math.hypot(self.x_mm, self.y_mm)


def die_sites(n_dies: int, model: WaferModel) -> np.ndarray:
    """(n_dies, 2) die centres in mm: the sites of a square grid whose dies lie wholly
    inside the usable disc, the ``n_dies`` nearest the centre (ties in raster order)."""
    if isinstance(n_dies, bool) or not isinstance(n_dies, int) or n_dies < 1:
        raise ConfigError("labctl run", "--dies", f"must be a positive integer, got {n_dies!r}")
    R = model.usable_radius_mm
    if model.die_pitch_mm is not None:
        sites = _grid(model.die_pitch_mm, R)
        if len(sites) < n_dies:
            raise ConfigError("wafer", "die_pitch_mm", f"{len(sites)} dies of "
                              f"{model.die_pitch_mm} mm fit on the wafer, {n_dies} asked")
    else:
        pitch = R * math.sqrt(math.pi / n_dies)  # area per die ≈ usable area / n
        while len(sites := _grid(pitch, R)) < n_dies:
            pitch *= 0.97
    d = np.hypot(sites[:, 0], sites[:, 1])
    order = np.lexsort((sites[:, 0], -sites[:, 1], np.round(d, 9)))
    return sites[order[:n_dies]]


def _grid(pitch_mm: float, radius_mm: float) -> np.ndarray:
    """Centres of the pitch × pitch dies wholly inside the disc; the grid is centred on
    the wafer (a die at the centre for odd counts)."""
    half = pitch_mm / 2
    k = int(radius_mm // pitch_mm) + 1
    out = []
    for offset in (0.0, half):  # whichever alignment fits more dies
        c = np.arange(-k, k + 1) * pitch_mm + offset
        X, Y = np.meshgrid(c, c)
        corner = np.hypot(np.abs(X) + half, np.abs(Y) + half)
        inside = corner <= radius_mm + 1e-9
        out.append(np.column_stack([X[inside], Y[inside]]))
    return max(out, key=len)


def wafer_dies(base: Preset, n_dies: int, seed: int,
               model: WaferModel | None = None) -> list[Die]:
    """The dies of a wafer around ``base`` (the wafer mean), each with its own chip seed."""
    model = model or WaferModel()
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("labctl run", "--seed", f"must be a non-negative integer, got {seed!r}")
    sites = die_sites(n_dies, model)
    root = np.random.SeedSequence(seed)
    chip_seeds = [int(s.generate_state(1, np.uint32)[0]) for s in root.spawn(n_dies)]
    rng = np.random.default_rng(np.random.SeedSequence([seed, WAFER_STREAM]))
    eps = rng.standard_normal((n_dies, 4))  # thickness, V_th, beta, fault rate
    R = model.diameter_mm / 2
    theta = math.radians(model.gradient_angle_deg)
    dies = []
    for i, (xa, ya) in enumerate(sites):
        x, y = float(xa), float(ya)
        rho2 = (x * x + y * y) / (R * R)
        u = (x * math.cos(theta) + y * math.sin(theta)) / R
        t = 1 + model.thickness_radial * rho2 + model.thickness_linear * u \
            + model.thickness_sigma * eps[i, 0]
        edge = (1 + (model.fault_edge_factor - 1) * rho2 * rho2) \
            * math.exp(model.fault_sigma * float(eps[i, 3]))
        t = float(t)
        sw, tr, fa = base.switching, base.transistor, base.faults
        rates = {k: getattr(fa, k) * edge
                 for k in ("stuck_lrs_rate", "stuck_hrs_rate", "unformable_rate")}
        overrides = {
            "switching": {"form_V_mean": sw.form_V_mean * max(t, 0.5)},
            "transistor": {
                "v_th_V": max(tr.v_th_V + model.vth_radial_V * rho2
                              + model.vth_sigma_V * float(eps[i, 1]), 0.0),
                "beta_A_per_V2": tr.beta_A_per_V2
                * max(1 + model.beta_sigma * float(eps[i, 2]), 0.5),
            },
            "faults": rates,
        }
        dies.append(Die(i, x, y, chip_seeds[i], overrides))
    return dies


def die_preset(base: Preset, die: Die) -> Preset:
    """``base`` with the die's values (validated like any preset)."""
    return base.with_changes(**die.overrides)
