"""The diffusion workload end to end, at the paper's set-up: train, sample in float, map
*every* layer to the chip, let the chip age, sample through it (stepped, and as a simulated
continuous-time loop), and cost it beside a digital baseline.

Set-up (Yang et al., Nat. Commun. 2026; :mod:`labctl.inference.score_sde`): score MLP
2 → 14 → 14 → 2 with the time encoding added to both hidden layers, all three weight layers
analog (``analog_layers_fraction`` = 1); ring r ~ N(0.7, 0.04); three overlapping classes
with classifier-free guidance; hardware-aware training W·(1+n), n ~ N(0, 0.1) limited to
±0.2; forward Euler with ``n_steps`` evaluations.

Figures:

- quality: sliced Wasserstein distance (SWD) of ``n_samples`` ring samples to fresh true
  samples, beside the true-against-true floor; the fraction of samples farther off the
  ring than 99 % of the float reference's (SWD hides a few stray samples); guided class
  accuracy under the Bayes classifier, beside the float model's unguided accuracy
  (guidance must matter);
- age: programming (and the per-column gain/offset trims fitted on calibration inputs)
  ends, ``refresh`` re-programs the later residual pairs from the earlier ones as measured
  through the array, then the chip waits ``age_at_use_s`` on its clock before it samples;
  with ``recalibrate`` the trims are refitted right before use (chip in the loop);
- the mapping's cost: cells used, and the programming and refresh energy and chip-clock
  time (``programming_*``, ``refresh_*``), apart from the per-sample figures;
- calibration inputs come from float trajectories of an independent noise draw, never from
  the test samples' own trajectories;
- cost, chip: energy and device time per sample from the backend's ledger over the stepped
  sampler; continuous-time loop: each network evaluation in the loop takes the device time
  the ledger charges for one evaluation (the periphery model's integration and conversion
  times — an upper bound for a loop without ADCs), and a solve takes ``continuous_steps``
  of them: the loop is an Euler integrator whose step is its own latency, and
  ``continuous_steps`` is the Euler count at which the float sampler has converged;
- digital baseline: the float sampler's host time on the same batch (measured) and the
  180 nm MAC energy model of :mod:`labctl.inference.digital_baseline`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from labctl.core.backend import Backend
from labctl.inference.analog import AnalogNetwork, recalibrate, refresh, to_analog
from labctl.inference.digital_baseline import digital_energy_J, timed
from labctl.inference.layers import Array, Linear, WeightNoise
from labctl.inference.mapping import (
    ProgramFn,
    ResidualMapping,
    TileAllocator,
    make_mapping,
    require_program_fn,
)
from labctl.inference.score_sde import (
    VPSDE,
    ScoreModel,
    blobs_data,
    classify_blobs,
    outlier_fraction,
    ring_data,
    ring_distance,
    sample_ode,
    sliced_wasserstein,
    train_score_model,
)

__all__ = ["DiffParams", "run_diffusion"]

Progress = Callable[[int, int, str], None]


@dataclass
class DiffParams:
    width: int = 14
    """Hidden width (the paper's 14)."""
    train_steps: int = 12000
    batch: int = 512
    lr: float = 1e-2
    noise_sigma: float = 0.1
    """Hardware-aware training W·(1+n), n ~ N(0, σ) limited to ±2σ (paper: 0.1, ±0.2)."""
    output_gain: float = 5.0
    """The paper's output scale ×5."""
    n_train: int = 8192
    n_samples: int = 10000
    """Unconditional ring samples (float and chip, same start noise): the SWD and outlier
    figures."""
    n_samples_cond: int = 3000
    """Guided conditional samples (class accuracy)."""
    n_samples_continuous: int = 2000
    """Samples of the simulated continuous-time loop (the first of the same start noise)."""
    n_cal: int = 512
    """Trajectories (from an independent noise draw) whose inputs calibrate the chip."""
    n_steps: int = 100
    """Euler steps of the stepped samplers (float and chip)."""
    reference_steps: int = 1000
    """Euler steps of the float reference (the paper's software stand-in for continuous
    time uses 10k; the SWD has converged well before 1k here)."""
    guidance: float = 2.0
    continuous: bool = True
    continuous_steps: int = 100
    """Euler points simulating the continuous-time loop (and loop latencies per solve)."""
    integrator_noise: float = 0.01
    """White-noise density of the analog integrator state, per √(ODE time). *assumption*."""
    integrator_power_W: float = 50e-6
    """Two integrators (op-amps) of the loop. *assumption*: ~25 µW per low-power op-amp."""
    mapping: str = "residual"
    percentile: float = 99.5
    n_pairs: int = 2
    replicas: int | None = None
    """Row copies per input (None: fill a tile's rows: 128 for the first layer, 18 for the
    others). Copies average the cells' errors and lift the signal over the periphery noise
    (before the refresh and column copies, on chip 0 with 2,000 samples: SWD ratio 2.6 with
    8 copies, 1.28 filling the rows)."""
    interleave: bool = True
    """Row copies interleaved (copy k of every input on rows k·n_in …) rather than
    contiguous: each input's copies span the whole column, so the IR drop along it acts on
    every input alike, as a column gain the affine trim absorbs."""
    tie_copies: bool = True
    """The residual pairs hold the residual of each *logical* weight (the mean over its
    copies), the same on every copy: a stuck cell is compensated by all copies together."""
    input_margin: float = 1.5
    """DAC full scale = this × the largest calibration input of each layer. A sample driven
    past the DAC range gets a clipped, too weak score and runs away (measured: one sample
    of 2,000 at |x| = 18 on an ideal chip without margin)."""
    col_copies: tuple[int, ...] = (1, 4, 16)
    """Column copies per weight layer, averaged digitally: each column's periphery noise
    is its own, so the average has 1/√copies of it. The last layer's outputs are small
    currents (2 outputs from sparse ReLU activations): without copies its per-call noise
    was 16 % of its output spread on chip seed 2, 5 % with 16 copies."""
    refresh: bool = True
    """Measured, 10,000 samples, chips 0–4, with the defaults: SWD ratio 1.09 mean / 1.21
    worst (2.30 / 4.06 before interleaving, tied residuals, headroom, refresh and column
    copies); outlier fraction chip 0.011 against float 0.0098 (means).

    Refresh before use: after all programming, measure each layer's first pair through
    the array (random ±1 probes, least squares: IR drop, relaxation, stuck cells as an MVM
    sees them) and re-program the last pair to the logical residual (residual mappings of
    two or more pairs; other mappings are not refreshed, ``refreshed`` in the results)."""
    refresh_probes: int = 64
    """Probe MVMs per pair and row block of the refresh."""
    settle_first_s: float = 3600.0
    settle_s: float = 60.0
    repeats: int = 1
    fault_threshold: float = 0.25
    age_at_use_s: float = 3600.0
    """Wait after programming and calibration before the chip samples."""
    recalibrate: str = "affine"
    """Refit the per-column trims right before use from the calibration inputs through the
    chip ("affine"), also re-read the cells first ("reread"), or not ("none")."""
    seed: int = 0


def _macs(model: ScoreModel) -> int:
    return sum(la.n_in * la.n_out for la in model.net.layers if isinstance(la, Linear))


def _cal_inputs(model: ScoreModel, sde: VPSDE, p: DiffParams, c: np.ndarray | None,
                rng: np.random.Generator) -> Array:
    """Network inputs along float trajectories of an independent noise draw."""
    rec: list[Array] = []
    x = rng.normal(size=(p.n_cal, 2))
    sample_ode(model, model.net.forward, sde, x, n_steps=p.n_steps, c=c,
               guidance=p.guidance if c is not None else 0.0, record_inputs=rec)
    allx = np.concatenate(rec, axis=0)
    return allx[rng.choice(len(allx), min(4096, len(allx)), replace=False)]


def run_diffusion(backend: Backend | None, params: DiffParams | dict[str, Any] | None = None,
                  program_fn: ProgramFn | None = None,
                  progress: Progress | None = None) -> dict[str, Any]:
    p = params if isinstance(params, DiffParams) else DiffParams(**(params or {}))

    def tick(done: int, total: int, what: str) -> None:
        if progress is not None:
            progress(done, total, what)

    rng = np.random.default_rng(p.seed)
    sde = VPSDE()
    noise = WeightNoise(p.noise_sigma, 2 * p.noise_sigma) if p.noise_sigma else None
    n = p.n_samples
    tick(0, 4, "diffusion: training")
    unc = ScoreModel.build(0, p.width, rng, noise, p.output_gain)
    loss_u = train_score_model(unc, ring_data(p.n_train, rng), None, sde, p.train_steps, rng,
                               batch=p.batch, lr=p.lr)
    data_c, lab_c = blobs_data(p.n_train, rng)
    cnd = ScoreModel.build(len(set(lab_c.tolist())), p.width, rng, noise, p.output_gain)
    loss_c = train_score_model(cnd, data_c, lab_c, sde, p.train_steps, rng, batch=p.batch,
                               lr=p.lr)
    tick(1, 4, "diffusion: float sampling")
    x1 = np.random.default_rng(p.seed + 10).normal(size=(n, 2))
    nc = min(n, p.n_samples_cond)
    cls = (np.arange(nc) % cnd.n_classes).astype(np.int64)
    true_a = ring_data(n, np.random.default_rng(p.seed + 11))
    true_b = ring_data(n, np.random.default_rng(p.seed + 12))
    xs_float, host_s = timed(lambda: sample_ode(unc, unc.net.forward, sde, x1,
                                                n_steps=p.n_steps))
    xs_ref = sample_ode(unc, unc.net.forward, sde, x1, n_steps=p.reference_steps)
    xc_float = sample_ode(cnd, cnd.net.forward, sde, x1[:nc], n_steps=p.n_steps, c=cls,
                          guidance=p.guidance)
    xc_unguided = sample_ode(cnd, cnd.net.forward, sde, x1[:nc], n_steps=p.n_steps, c=cls)
    macs = p.n_steps * _macs(unc)
    far = float(np.percentile(ring_distance(xs_ref), 99.0))
    out: dict[str, Any] = {
        "params": asdict(p),
        "swd_floor": sliced_wasserstein(true_a, true_b),
        "swd_float": sliced_wasserstein(xs_float, true_a),
        "swd_float_reference": sliced_wasserstein(xs_ref, true_a),
        "outlier_fraction_float": outlier_fraction(xs_float, far),
        "outlier_fraction_true": outlier_fraction(true_b, far),
        "outlier_distance": far,
        "cfg_accuracy_float": float(np.mean(classify_blobs(xc_float) == cls)),
        "unguided_accuracy_float": float(np.mean(classify_blobs(xc_unguided) == cls)),
        "loss_uncond": np.asarray(loss_u),
        "loss_cond": np.asarray(loss_c),
        "samples": {"true": true_a, "float": xs_float, "cond_float": xc_float,
                    "cond_labels": cls},
        "n_samples": n,
        "analog_layers_fraction": 0.0,
        "digital_macs_per_sample": macs,
        "digital_host_time_s_per_sample": host_s / n,
        "digital_energy_J_per_sample_model": digital_energy_J(macs),
    }
    if backend is None:
        return out

    tick(2, 4, "diffusion: programming the chip")
    pf = require_program_fn(program_fn)
    mapping = make_mapping(p.mapping, p.percentile, p.settle_first_s, p.settle_s, p.n_pairs)
    alloc = TileAllocator(backend.chip)
    crng = np.random.default_rng(p.seed + 40)
    cal_u = _cal_inputs(unc, sde, p, None, crng)
    cal_c = _cal_inputs(cnd, sde, p, np.arange(p.n_cal) % cnd.n_classes, crng)
    kw: dict[str, Any] = {"mapping": mapping, "allocator": alloc,
                          "fault_threshold": p.fault_threshold, "repeats": p.repeats,
                          "replicas": p.replicas, "interleave": p.interleave,
                          "tie_copies": p.tie_copies, "input_margin": p.input_margin,
                          "col_copies": tuple(p.col_copies)}
    t_prog, before = backend.clock.now(), backend.ledger.snapshot()
    chip_u = to_analog(unc.net, backend, pf, cal_u, **kw)
    chip_c = to_analog(cnd.net, backend, pf, cal_c, **kw)
    chips: list[tuple[AnalogNetwork, ScoreModel, Array]] = [(chip_u, unc, cal_u),
                                                          (chip_c, cnd, cal_c)]
    led_prog = backend.ledger.since(before)
    t_refresh, before = backend.clock.now(), backend.ledger.snapshot()
    refreshed = p.refresh and isinstance(mapping, ResidualMapping) and mapping.n_pairs > 1
    if refreshed:
        for net, _, _ in chips:
            refresh(net, pf, n_probe=p.refresh_probes, settle_s=p.settle_s)
    led_ref = backend.ledger.since(before)
    out.update({
        "refreshed": refreshed,
        "programming_clock_s": t_refresh - t_prog,
        "programming_energy_J": led_prog.get("energy_J", 0.0),
        "refresh_clock_s": backend.clock.now() - t_refresh,
        "refresh_energy_J": led_ref.get("energy_J", 0.0),
        "cells_used": sum(la.cells_used() for net, _, _ in chips for la in net.analog_layers()),
    })
    backend.clock.wait(p.age_at_use_s)
    if p.recalibrate != "none":
        for net, model, cal in chips:
            recalibrate(net, model.net, cal, reread=p.recalibrate == "reread")
    tick(3, 4, "diffusion: sampling through the chip")
    before = backend.ledger.snapshot()
    xs_chip = sample_ode(unc, chip_u.forward, sde, x1, n_steps=p.n_steps)
    led = backend.ledger.since(before)
    xc_chip = sample_ode(cnd, chip_c.forward, sde, x1[:nc], n_steps=p.n_steps, c=cls,
                         guidance=p.guidance)
    n_lin = len(unc.net.linears())
    out.update({
        "analog_layers_fraction": len(chip_u.analog_layers()) / n_lin,
        "swd_chip": sliced_wasserstein(xs_chip, true_a),
        "outlier_fraction_chip": outlier_fraction(xs_chip, far),
        "cfg_accuracy_chip": float(np.mean(classify_blobs(xc_chip) == cls)),
        "age_at_use_s": p.age_at_use_s,
        "energy_J_per_sample_chip": led.get("energy_J", 0.0) / n,
        "device_time_s_per_sample_chip": led.get("device_time_s", 0.0) / n,
        "digital_fraction_weights": float(np.mean([la.digital_fraction
                                                   for la in chip_u.analog_layers()])),
        "ledger_sampling_uncond": led,
    })
    out["swd_ratio"] = out["swd_chip"] / out["swd_float"]
    out["samples"].update({"chip": xs_chip, "cond_chip": xc_chip})
    if p.continuous:
        nct = min(n, p.n_samples_continuous)
        before = backend.ledger.snapshot()
        xs_ct = sample_ode(unc, chip_u.forward, sde, x1[:nct], n_steps=p.continuous_steps,
                           integrator_noise=p.integrator_noise,
                           rng=np.random.default_rng(p.seed + 30))
        led_ct = backend.ledger.since(before)
        dev_s = led_ct.get("device_time_s", 0.0)
        loop_s = dev_s / (nct * p.continuous_steps)
        solve_s = loop_s * p.continuous_steps
        power = led_ct.get("mvm_energy_J", 0.0) / dev_s if dev_s > 0 else float("nan")
        e_ct = (power + p.integrator_power_W) * solve_s
        out.update({
            "swd_chip_continuous": sliced_wasserstein(xs_ct, true_a[:nct]),
            "swd_float_at_continuous_n": sliced_wasserstein(xs_float[:nct], true_a[:nct]),
            "outlier_fraction_chip_continuous": outlier_fraction(xs_ct, far),
            "loop_latency_s": loop_s,
            "device_time_s_per_sample_continuous": solve_s,
            "array_power_W_continuous": power,
            "energy_J_per_sample_continuous": e_ct,
            "speedup_vs_host_continuous": out["digital_host_time_s_per_sample"] / solve_s
            if solve_s > 0 else float("nan"),
            "energy_ratio_vs_digital_model_continuous":
                e_ct / out["digital_energy_J_per_sample_model"],
        })
        out["samples"]["chip_continuous"] = xs_ct
    tick(4, 4, "diffusion: done")
    return out
