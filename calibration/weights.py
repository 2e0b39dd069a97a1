"""The workloads' weight programmer: forming + the calibration verify-write, as a ``program_fn``.

:func:`make_program_fn` returns a :data:`labctl.inference.mapping.ProgramFn` (``program_fn(
backend, cells, targets_S)``) for the inference workloads (:mod:`labctl.inference`):

1. cells not yet formed are formed with the forming routine's batched gate ramp
   (:func:`calibration.forming.form_direct`). A cell counts as formed when this programmer
   formed or programmed it before, when the chip's calibration record marks it ``ok``, or
   when it reads above ``pristine_below`` × the chip's ``g_min_S`` (a RESET cell sits near the
   bottom of the window; a pristine one far below it);
2. the cells are verify-written with :func:`calibration.programming.program_direct` and a
   policy of :mod:`calibration.policies` (default: the gate-voltage ladder), skipping cells
   the calibration record marks unformed or stuck, cells that did not form, and cells an
   earlier call found stuck for good (below).

A verify-write "stuck" verdict is one-directional: the cell made no progress over several
pulses towards its target. On a die whose transistors cannot source the top of the window
(low β, high V_th) healthy cells get it going up, and they still move down as well as any.
So the programmer remembers, per cell, the level it last stuck at going up (its ceiling) and
going down (its floor), and aims a later target past one of them one acceptance band inside
it: as close as the cell goes, and within its reach, so the verify-write converges there
instead of spending another dozen pulses on a level the cell just failed to pass (the bound
is its best read, noise included). A cell is skipped for good only when the verdicts say it
cannot switch, by the fault classification's own rule (:func:`calibration.faults.stuck_bounds`):
stuck going up in the bottom quarter of the window, stuck going down in its upper half, or
stuck both ways within four acceptance bands of one level. Remembering every verdict as a dead
cell instead marked 16 k healthy cells bad on one wafer die (seed 3, die 3) over two
fast-weight episodes, 2.4× its true fault count, and they grew with every rewrite.

No device coefficients live here: the gate ladder's gate → compliance-cap relation is the
policy's (its parameters, or the ``v_th_V`` / ``beta_A_per_V2`` a characterization fitted
into the record's ``programming.device_model.transistor``).

Interrupting and resuming: inside a run, ``be`` is the runner's recording backend, so every
forming and verify-write batch this programmer applies is recorded before it is applied,
Ctrl+C or SIGTERM stops it before its next batch, and ``labctl run --resume`` continues the
programming where it stopped by re-executing the step against that record — a cell that had
verified is never pulsed again (``labctl/runs/fast_forward.py``). Nothing here has to yield
checkpoints for that; what it needs is to be deterministic: the same cells, targets and reads
give the same pulses.

Settings for weights (measured with ``labctl bench --only inference``, docs/inference.md):
acceptance band ±0.5 µS aiming at ±0.25 µS, 3 reads averaged per verify. The calibration
default ±1 µS / 0.5 µS needs ≈ 25 % fewer pulses but gave a worse diffusion SWD ratio on the
hard seeds (1.43 / 1.32 against 1.33 / 1.31 on seeds 1 / 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from calibration import forming
from calibration import programming as pg
from calibration.faults import stuck_bounds
from calibration.policies import POLICY, Policy, check_policy, make_policy, ramp_section
from calibration.verify_write import KNOWN_BAD
from labctl.core.backend import Backend, ChipInfo
from labctl.core.calibration_record import FAULT_CODES, CalibrationRecord
from labctl.core.cells import Cells
from labctl.core.envelope import SafetyEnvelope
from labctl.core.routine_params import ParamError, validate

__all__ = ["WEIGHT_SETTINGS", "WeightProgrammer", "make_program_fn"]

WEIGHT_SETTINGS = pg.Settings(tolerance_S=0.5e-6, aim_S=0.25e-6, n_average=3)
"""Verify-write settings for weights (tighter than the calibration default ±1 µS)."""

_SET = ("SET amplitude ramp (bit line; amplitude policy only)", 1.2, 3.3, 2.8, 1e-6)
_RESET = ("RESET amplitude ramp (source line, gate fully on)", 1.2, 2.5, 5.0, 1e-6)


class WeightProgrammer:
    """A ``program_fn``: form what is not formed, then verify-write (module docstring).

    Remembers, per backend, which cells it formed or found bad and the levels cells stuck at
    (module docstring), so repeated calls (fast weights re-program changed cells every
    chunk) neither re-form them nor pulse them where they cannot go."""

    def __init__(self, settings: pg.Settings, policy_spec: Mapping[str, Any],
                 set_ramp: Mapping[str, Any], reset_ramp: Mapping[str, Any],
                 forming_params: Mapping[str, Any],
                 record: CalibrationRecord | None = None, pristine_below: float = 0.2) -> None:
        self.settings = settings
        self.policy_spec = dict(policy_spec)
        self.set_ramp = dict(set_ramp)
        self.reset_ramp = dict(reset_ramp)
        self.forming_params = dict(forming_params)
        self.record = record
        self.pristine_below = pristine_below
        self.policy: Policy = make_policy(self.policy_spec, self.set_ramp, self.reset_ramp)
        self._be: Backend | None = None
        self._formed = np.zeros(0, bool)
        self._bad = np.zeros(0, bool)
        self._ceiling_S = np.zeros(0)
        """Level a cell stuck at going up (+inf: never)."""
        self._floor_S = np.zeros(0)
        """Level a cell stuck at going down (−inf: never)."""
        self.last: dict[str, np.ndarray] = {}
        """The verify-write state of the last call (outcomes, pulses per cell)."""

    def check(self, chip: ChipInfo, env: SafetyEnvelope) -> None:
        """Every pulse this programmer can apply lies inside the envelope (raises
        :class:`ParamError` otherwise) — for a routine's check before any operation."""
        f = self.forming_params
        if f["bitline_V"] > env.max_bitline_V or f["gate_stop_V"] > env.max_gate_V:
            raise ParamError("(envelope)", f"the weight programmer's forming needs bit line "
                             f"{f['bitline_V']:g} V and gate up to {f['gate_stop_V']:g} V; the "
                             f"station allows {env.max_bitline_V:g} V / {env.max_gate_V:g} V")
        r = self.reset_ramp
        if r["stop_V"] > env.max_sourceline_V or r["gate_V"] > env.max_gate_V:
            raise ParamError("(envelope)", f"the weight programmer's RESET needs source line "
                             f"{r['stop_V']:g} V at gate {r['gate_V']:g} V; the station allows "
                             f"{env.max_sourceline_V:g} V / {env.max_gate_V:g} V")
        widths = (f["width_s"], r["width_s"])
        if any(not env.min_width_s <= w <= env.max_width_s for w in widths):
            raise ParamError("(envelope)", "the weight programmer needs pulse widths "
                             f"{r['width_s']:g} s (SET/RESET) and {f['width_s']:g} s (FORM) "
                             "inside the envelope")
        try:
            check_policy(self.policy_spec, env, chip)
        except ParamError as e:
            raise ParamError("(envelope)", f"the weight programmer: {e}") from e

    def _reset_memory(self, be: Backend) -> None:
        c = be.chip
        shape = (c.n_tiles, c.n_rows, c.n_cols)
        self._be = be
        self._formed = np.zeros(shape, bool)
        self._bad = np.zeros(shape, bool)
        self._ceiling_S = np.full(shape, np.inf)
        self._floor_S = np.full(shape, -np.inf)
        rec = self.record
        if rec is not None and tuple(rec.fault_map.shape) == shape:
            self._formed |= rec.fault_map == FAULT_CODES["ok"]
            self._bad |= np.isin(rec.fault_map, KNOWN_BAD)

    def __call__(self, be: Backend, cells: Cells, targets_S: np.ndarray) -> dict[str, np.ndarray]:
        if be is not self._be:
            self._reset_memory(be)
        at = (cells.tile, cells.row, cells.col)
        t = np.asarray(targets_S, np.float64).reshape(-1)
        ceiling, floor = self._ceiling_S[at], self._floor_S[at]
        band = self.settings.tolerance_S
        bad = self._bad[at]  # a copy (fancy indexing)
        aim = np.clip(t, floor + band, ceiling - band)  # one band inside: within its reach
        formed = self._formed[at] | bad
        if not formed.all():
            todo = np.flatnonzero(~formed)
            g = be.read(cells.subset(todo), self.forming_params["read_V"])
            pristine = g < self.pristine_below * be.chip.g_min_S
            formed[todo[~pristine]] = True
            if pristine.any():
                fst = forming.form_direct(be, cells, self.forming_params, skip=formed)
                bad |= fst["outcome"] == forming.UNFORMABLE
        st = pg.program_direct(be, cells, aim, self.settings, self.policy, skip=bad)
        self._formed[at] = True
        out = st["outcome"]
        stuck = out == pg.STUCK
        up = stuck & (st["last_dir"] > 0)
        down = stuck & (st["last_dir"] < 0)
        # the level it stuck at: its best error, on the side it came from
        ceiling[up] = aim[up] - st["ref_err_S"][up]
        floor[down] = aim[down] + st["ref_err_S"][down]
        hrs_below, lrs_above = stuck_bounds(be.chip.g_min_S, be.chip.g_max_S)
        self._bad[at] = (bad | (ceiling < hrs_below) | (floor > lrs_above)
                         | (ceiling - floor < 4 * band))
        self._ceiling_S[at], self._floor_S[at] = ceiling, floor
        self.last = st
        return st


def make_program_fn(record: CalibrationRecord | None = None, *,
                    settings: pg.Settings = WEIGHT_SETTINGS,
                    policy: Mapping[str, Any] | None = None,
                    set_ramp: Mapping[str, Any] | None = None,
                    reset: Mapping[str, Any] | None = None,
                    forming_params: Mapping[str, Any] | None = None) -> WeightProgrammer:
    """The workloads' ``program_fn``: forming + verify-write with ``settings`` and a policy.

    ``policy`` is a ``policy`` parameter of the verify-write routine (default ``{kind:
    gate}``), ``set_ramp`` / ``reset`` its SET / RESET ramp sections, ``forming_params``
    overrides of the forming routine's ramp. With a calibration ``record``, cells it marks
    faulty are skipped, cells it marks ``ok`` are taken as formed, and a fitted gate →
    compliance relation (``programming.device_model.transistor``: ``v_th_V``,
    ``beta_A_per_V2``) replaces the gate ladder's defaults unless ``policy`` sets them."""
    user = dict(policy or {"kind": "gate"})
    if record is not None and user.get("kind", "gate") == "gate":
        tr = record.programming.get("device_model", {}).get("transistor", {})
        for src, dst in (("v_th_V", "vth_V"), ("beta_A_per_V2", "beta_A_per_V2")):
            if src in tr and dst not in user:
                user[dst] = float(tr[src])
    spec = validate({"policy": POLICY, "set": ramp_section(*_SET),
                     "reset": ramp_section(*_RESET)},
                    {"policy": user, "set": dict(set_ramp or {}), "reset": dict(reset or {})})
    fp = {**forming.default_params(), **(forming_params or {})}
    return WeightProgrammer(settings, spec["policy"], spec["set"], spec["reset"], fp, record)
