"""Target conductance matrices for programming: from a .npy file or a generated pattern."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from labctl.core.backend import ChipInfo
from labctl.core.routine_params import Float, Int, ParamError, PathParam, Tagged

_LOW = Float("low conductance", unit="S", min=0.0, max=1e-3, default=5e-6)
_HIGH = Float("high conductance", unit="S", min=0.0, max=1e-3, default=30e-6)

TARGET = Tagged(
    "target conductances, siemens",
    {
        "checkerboard": {"low_S": _LOW, "high_S": _HIGH},
        "random_uniform": {
            "low_S": _LOW,
            "high_S": _HIGH,
            "seed": Int("pattern seed (-1: the run's seed)", min=-1, default=-1),
        },
        "uniform": {"g_S": Float("conductance of every cell", unit="S", min=0.0, max=1e-3)},
        "file": {"path": PathParam("a .npy file of conductances in siemens, shape of the region")},
    },
    default={"kind": "checkerboard"},
)


def make_target(spec: Mapping[str, Any], shape: tuple[int, int], seed: int) -> np.ndarray:
    kind = spec["kind"]
    if kind == "checkerboard":
        rr, cc = np.indices(shape)
        return np.where((rr + cc) % 2 == 0, spec["high_S"], spec["low_S"]).astype(np.float64)
    if kind == "random_uniform":
        s = seed if spec["seed"] < 0 else spec["seed"]
        rng = np.random.default_rng(s)
        return rng.uniform(spec["low_S"], spec["high_S"], size=shape)
    if kind == "uniform":
        return np.full(shape, spec["g_S"], dtype=np.float64)
    return _load_npy(spec["path"])


def check_target(spec: Mapping[str, Any], shape: tuple[int, int], chip: ChipInfo) -> None:
    """Shape and window checks (the window is the chip's)."""
    lo_ok, hi_ok = chip.g_min_S, chip.g_max_S
    window = f"the chip's window {lo_ok:g} S ≤ value ≤ {hi_ok:g} S"
    if spec["kind"] == "file":
        t = _load_npy(spec["path"])
        if t.shape != shape:
            raise ParamError("target.path", f"array has shape {t.shape}; the region is {shape}")
        if not np.all(np.isfinite(t)) or t.min() < lo_ok or t.max() > hi_ok:
            raise ParamError("target.path", f"values must be finite and within {window}")
        return
    for key in ("low_S", "high_S", "g_S"):
        if key in spec and not lo_ok <= spec[key] <= hi_ok:
            raise ParamError(f"target.{key}", f"must be within {window}; got {spec[key]:g}")
    if "low_S" in spec and spec["low_S"] > spec["high_S"]:
        raise ParamError("target.low_S", "must not exceed high_S")


def _load_npy(path: str) -> np.ndarray:
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ParamError("target.path", f"not a readable .npy array: {e}") from None
    if a.ndim != 2 or a.dtype.kind not in "fiu":
        raise ParamError("target.path", f"must be a 2-D numeric array, got {a.dtype} {a.shape}")
    return a.astype(np.float64)


def fingerprint(target_S: np.ndarray) -> str:
    """A short, stable digest of a target matrix (to recognise it in a later run)."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(target_S, dtype=np.float64).tobytes()).hexdigest()[
        :16
    ]


def region_key(region: Mapping[str, Any]) -> str:
    """``tile0:r0-32:c0-32`` — names a region in the calibration record."""
    (r0, r1), (c0, c1) = region["rows"], region["cols"]
    return f"tile{region['tile']}:r{r0}-{r1}:c{c0}-{c1}"


PROGRAMMED_END = "programmed_end_s"
"""Key, in the calibration record's ``programming``, of the chip-clock time at which each
region's last programming (verify-write or refresh) ended: what a figure's age counts from."""


def record_programmed_end(programming: dict[str, Any], region: Mapping[str, Any],
                          t_s: float) -> None:
    programming.setdefault(PROGRAMMED_END, {})[region_key(region)] = float(t_s)


def programmed_end_s(programming: Mapping[str, Any], region: Mapping[str, Any]) -> float | None:
    """When the region's last programming ended on the chip's clock, s (None: not recorded,
    e.g. programmed outside labctl or under another region)."""
    t = programming.get(PROGRAMMED_END, {}).get(region_key(region))
    return None if t is None else float(t)
