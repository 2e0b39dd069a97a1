"""The diffusion workload end to end: train, sample in float, map to the chip, sample
through the chip (stepped and as a simulated continuous-time analog loop), and cost it.

Figures reported (Yang et al., Nat. Commun. 2026; docs/references.md):

- quality: sliced Wasserstein distance (SWD) of 2-D samples to fresh true samples, beside
  the true-against-true floor at the same sample size; class accuracy of classifier-free
  guided samples under the rings' Bayes classifier;
- cost per sample, chip: energy and device time from the backend's ledger over the stepped
  chip sampler (every ODE step one pass of MVMs through DAC and ADC). Layers kept digital
  are not in the ledger; their MAC count is reported (``digital_macs_per_sample_hybrid``);
- continuous-time estimate: the network in closed loop with an analog integrator for
  ``integration_time_s`` per sample; array power from the ledger's energy per device-second
  of MVM (an upper bound: it includes the DAC/ADC conversions a closed loop would not need)
  plus an assumed integrator power;
- calibration: each network's per-column affine correction is refitted from calibration
  inputs through the chip right before it samples (``recalibrate``, HERMES-style, Le Gallo
  et al. 2023): relaxation keeps moving the cells after read-back, and with both networks
  programmed first the unconditional one samples ``programmed_age_s_uncond`` (7,320 s by
  default) after its last read-back (measurements in docs/inference.md);
- digital baseline, stated not measured: the paper's IEDM 2024 figures, 3.0 ms and 22.5 µJ
  per sample in software against 0.02 ms and 7.2 µJ analog (docs/references.md), beside the MAC
  count our sampler needs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from labctl.core.backend import Backend
from labctl.inference.analog import recalibrate, to_analog
from labctl.inference.diffusion import (
    VPSDE,
    EpsModel,
    classify_rings,
    ring_data,
    rings_data,
    sample_ode,
    sliced_wasserstein,
    train_eps_model,
)
from labctl.inference.layers import Array, Linear, WeightNoise
from labctl.inference.mapping import ProgramFn, TileAllocator, make_mapping, require_program_fn

__all__ = ["DiffParams", "run_diffusion"]

DIGITAL_BASELINE = {
    "digital_time_s_per_sample": 3.0e-3,
    "digital_energy_J_per_sample": 22.5e-6,
    "paper_analog_time_s_per_sample": 0.02e-3,
    "paper_analog_energy_J_per_sample": 7.2e-6,
}
"""Yang et al., IEDM 2024 version (docs/references.md): per-sample time and energy, software vs
their analog closed loop. Stated for comparison; not measured here."""


@dataclass
class DiffParams:
    width: int = 64
    depth: int = 3
    train_steps: int = 3000
    batch: int = 256
    lr: float = 3e-3
    noise_sigma: float = 0.1
    """Hardware-aware training W·(1+n), n ~ N(0, σ) clipped at 2σ (paper: 0.1, ±0.2)."""
    noise_additive: float = 0.0
    """Additive training noise, × the layer's max |W|: the device spread's shape (cells
    err by about the same siemens whatever the weight; see ``mapping.device_noise``)."""
    n_train: int = 8192
    n_samples: int = 2000
    n_steps: int = 25
    """Heun steps of the float / stepped chip sampler (2 evaluations each)."""
    guidance: float = 2.0
    radii: tuple[float, ...] = (0.5, 1.5)
    continuous: bool = True
    continuous_steps: int = 200
    """Euler points simulating the continuous-time loop."""
    integrator_noise: float = 0.01
    """White-noise density of the analog integrator state, per √(ODE time). *assumption*."""
    integration_time_s: float = 20e-6
    """Device time of one continuous-time solve (matches the paper's 0.02 ms). *assumption*."""
    integrator_power_W: float = 50e-6
    """Two integrators (op-amps) of the loop. *assumption*: ~25 µW per low-power op-amp."""
    digital_first: bool = True
    """Keep the first layer (x and time features in) digital: its weights on the two
    coordinate rows set the samples' spatial precision, and the chip's error there
    broadens the ring (measured: SWD 0.087 analog vs 0.065 digital at 0.055 float).
    It is 2+2·8 inputs × width MACs, ~12 % of the network."""
    digital_last: bool = True
    """Also keep the output layer (width → 2) digital: ε̂ errors are divided by σ(t) in
    the ODE drift, and the 2-column output layer's error reaches ε̂ undiluted (seed 1:
    SWD 0.087 analog vs 0.037 digital at 0.027 float). With ``digital_first`` the analog
    part is the two hidden layers, 2·width² of the (18 + 2)·width + 2·width² MACs."""
    mapping: str = "residual"
    percentile: float = 99.5
    n_pairs: int = 2
    """Cell pairs per weight with the residual mapping."""
    replicas: int | None = None
    """Row copies per input (None: fill a tile's rows; more spans several row blocks)."""
    settle_first_s: float = 3600.0
    """Wait before reading back the first cell pair (see ``ResidualMapping``); the
    differential mapping waits this long before use."""
    settle_s: float = 60.0
    """Wait before reading back each later pair; the network is used right after."""
    repeats: int = 1
    """MVMs averaged per layer call (periphery noise ÷ √repeats, cost × repeats)."""
    fault_threshold: float = 0.25
    """Weights read back further than this × column scale get a digital correction."""
    recalibrate: str = "affine"
    """Chip-in-the-loop recalibration of each network right before it samples: "none",
    "affine" (refit the per-column gain/offset from calibration inputs through the chip) or
    "reread" (re-read the cells, re-derive ADC ranges, then refit). See
    :func:`~labctl.inference.analog.recalibrate`. Measured over seeds 0–4 (docs/inference.md):
    chip/float SWD ratio mean 1.40 → 1.15, worst 2.14 → 1.36; "reread" adds nothing."""
    program_order: str = "both_first"
    """"both_first": program both networks, then sample (the unconditional one is then used
    ``2·depth−2`` settle schedules after its read-back: 7,320 s by default);
    "just_in_time": program each network right before it samples (refresh before use)."""
    seed: int = 0


def _macs(model: EpsModel) -> int:
    return sum(la.n_in * la.n_out for la in model.net.layers if isinstance(la, Linear))


def run_diffusion(backend: Backend | None, params: DiffParams | dict[str, Any] | None = None,
                  program_fn: ProgramFn | None = None) -> dict[str, Any]:
    p = params if isinstance(params, DiffParams) else DiffParams(**(params or {}))
    rng = np.random.default_rng(p.seed)
    sde = VPSDE()
    noise = (WeightNoise(p.noise_sigma, 2 * p.noise_sigma, p.noise_additive)
             if p.noise_sigma or p.noise_additive else None)
    n = p.n_samples

    # unconditional: a ring
    data_u = ring_data(p.n_train, rng)
    unc = EpsModel.build(0, p.width, p.depth, rng, noise)
    loss_u = train_eps_model(unc, data_u, None, sde, p.train_steps, rng, batch=p.batch, lr=p.lr)
    # conditional: one ring per class, null token for classifier-free guidance
    data_c, lab_c = rings_data(p.n_train, rng, p.radii)
    cnd = EpsModel.build(len(p.radii), p.width, p.depth, rng, noise)
    loss_c = train_eps_model(cnd, data_c, lab_c, sde, p.train_steps, rng, batch=p.batch, lr=p.lr)

    x1 = np.random.default_rng(p.seed + 10).normal(size=(n, 2))
    cls = np.arange(n) % len(p.radii)
    true_a = ring_data(n, np.random.default_rng(p.seed + 11))
    true_b = ring_data(n, np.random.default_rng(p.seed + 12))
    rec_u: list[Array] = []
    rec_c: list[Array] = []
    xs_float = sample_ode(unc, unc.net.forward, sde, x1, n_steps=p.n_steps, record_inputs=rec_u)
    xc_float = sample_ode(cnd, cnd.net.forward, sde, x1, n_steps=p.n_steps, c=cls,
                          guidance=p.guidance, record_inputs=rec_c)
    evals_per_sample = 2 * p.n_steps
    out: dict[str, Any] = {
        "params": asdict(p),
        "swd_floor": sliced_wasserstein(true_a, true_b),
        "swd_float": sliced_wasserstein(xs_float, true_a),
        "cfg_accuracy_float": float(np.mean(classify_rings(xc_float, p.radii) == cls)),
        "loss_uncond": np.asarray(loss_u),
        "loss_cond": np.asarray(loss_c),
        "samples": {"true": true_a, "float": xs_float, "cond_float": xc_float, "cond_labels": cls},
        "digital_macs_per_sample": evals_per_sample * _macs(unc),
        **DIGITAL_BASELINE,
    }
    if backend is None:
        return out

    pf = require_program_fn(program_fn)
    mapping = make_mapping(p.mapping, p.percentile, p.settle_first_s, p.settle_s, p.n_pairs)
    alloc = TileAllocator(backend.chip)
    crng = np.random.default_rng(p.seed + 20)

    def cal(rec: list[Array]) -> Array:
        allx = np.concatenate(rec, axis=0)
        return allx[crng.choice(len(allx), min(4096, len(allx)), replace=False)]

    kw: dict[str, Any] = {"mapping": mapping, "allocator": alloc,
                          "fault_threshold": p.fault_threshold, "repeats": p.repeats,
                          "replicas": p.replicas,
                          "skip_first": ((0,) if p.digital_first else ())
                          + ((p.depth,) if p.digital_last else ())}
    cal_u, cal_c = cal(rec_u), cal(rec_c)
    jit = p.program_order == "just_in_time"
    chip_u = to_analog(unc.net, backend, pf, cal_u, **kw)
    t_prog_u = backend.clock.now()
    if not jit:
        chip_c = to_analog(cnd.net, backend, pf, cal_c, **kw)
        t_prog_c = backend.clock.now()
    if p.recalibrate != "none":
        recalibrate(chip_u, unc.net, cal_u, reread=p.recalibrate == "reread")
    age_u = backend.clock.now() - t_prog_u
    before = backend.ledger.snapshot()
    xs_chip = sample_ode(unc, chip_u.forward, sde, x1, n_steps=p.n_steps)
    led = backend.ledger.since(before)
    if p.continuous:
        before = backend.ledger.snapshot()
        xs_ct = sample_ode(unc, chip_u.forward, sde, x1, n_steps=p.continuous_steps,
                           integrator_noise=p.integrator_noise,
                           rng=np.random.default_rng(p.seed + 30))
        led_ct = backend.ledger.since(before)
    if jit:
        chip_c = to_analog(cnd.net, backend, pf, cal_c, **kw)
        t_prog_c = backend.clock.now()
    if p.recalibrate != "none":
        recalibrate(chip_c, cnd.net, cal_c, reread=p.recalibrate == "reread")
    age_c = backend.clock.now() - t_prog_c
    xc_chip = sample_ode(cnd, chip_c.forward, sde, x1, n_steps=p.n_steps, c=cls,
                         guidance=p.guidance)
    lin = [la for la in unc.net.layers if isinstance(la, Linear)]
    digital = {i for i in kw["skip_first"]}
    out.update({
        "digital_macs_per_sample_hybrid": evals_per_sample
        * sum(la.n_in * la.n_out for i, la in enumerate(lin) if i in digital),
        "analog_macs_per_sample_hybrid": evals_per_sample
        * sum(la.n_in * la.n_out for i, la in enumerate(lin) if i not in digital),
        "swd_chip": sliced_wasserstein(xs_chip, true_a),
        "programmed_age_s_uncond": age_u,
        "programmed_age_s_cond": age_c,
        "cfg_accuracy_chip": float(np.mean(classify_rings(xc_chip, p.radii) == cls)),
        "energy_J_per_sample_chip": led.get("energy_J", 0.0) / n,
        "device_time_s_per_sample_chip": led.get("device_time_s", 0.0) / n,
        "ledger_sampling_uncond": led,
    })
    out["samples"].update({"chip": xs_chip, "cond_chip": xc_chip})
    if p.continuous:
        mvm_s = led_ct.get("device_time_s", 0.0)
        power = led_ct.get("mvm_energy_J", 0.0) / mvm_s if mvm_s > 0 else float("nan")
        e_ct = (power + p.integrator_power_W) * p.integration_time_s
        out.update({
            "swd_chip_continuous": sliced_wasserstein(xs_ct, true_a),
            "array_power_W_continuous": power,
            "energy_J_per_sample_continuous": e_ct,
            "device_time_s_per_sample_continuous": p.integration_time_s,
            "speedup_vs_digital_continuous": DIGITAL_BASELINE["digital_time_s_per_sample"]
            / p.integration_time_s,
            "energy_ratio_vs_digital_continuous": e_ct
            / DIGITAL_BASELINE["digital_energy_J_per_sample"],
        })
        out["samples"]["chip_continuous"] = xs_ct
    return out
