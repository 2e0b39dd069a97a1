"""A campaign's results by die: ``DIR/summary.nc``, and the words ``labctl show DIR`` prints.

The summary is an xarray Dataset (netCDF4 through h5netcdf) with one dimension, ``die``, and
coordinates ``die_id``, ``x_mm``, ``y_mm`` (NaN for chips that are not on a simulated
wafer), ``seed`` and ``chip_id``. Its variables are ``status`` and ``message`` (how each
die's run ended), ``wall_s``, ``cell_pulses`` (pulses in the die's run file), and every
scalar result of every step, named ``STEP.KEY`` (``forming.yield_fraction``; nested
figures as ``STEP.KEY.SUBKEY``; a step name used twice gets ``#N``), NaN where a die has no
such result. Each result variable's attributes name its step, routine and key.

It is rebuilt from the run files, not from what workers returned, so it is the same after
a resume as after an uninterrupted campaign, and it also describes a campaign still running.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labctl.core.errors import ConfigError
from labctl.runs.campaign_die import DieOutcome
from labctl.runs.campaign_plan import MANIFEST, SUMMARY, Manifest

if TYPE_CHECKING:
    import xarray as xr

SKIP_KEYS = ("outcome_codes",)
"""Result entries that are code tables, not figures."""


def _step_labels(manifest: Manifest) -> list[tuple[str, str]]:
    """(label, routine) of each protocol step, unique labels."""
    import yaml

    data = yaml.safe_load(manifest.protocol_text)
    raw = data.get("steps") if isinstance(data, dict) and "steps" in data else [data]
    if not isinstance(raw, list):
        return []
    names = [(str(s.get("name", s.get("routine", "?"))), str(s.get("routine", "?")))
             for s in raw if isinstance(s, dict)]
    count: dict[str, int] = {}
    for n, _ in names:
        count[n] = count.get(n, 0) + 1
    return [(n if count[n] == 1 else f"{n}#{i + 1}", r) for i, (n, r) in enumerate(names)]


def _flatten(prefix: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, bool | int | float):
        out[prefix] = float(value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)


def die_results(path: Path, labels: list[tuple[str, str]]
                ) -> tuple[str, dict[str, float], int, str]:
    """(run status, STEP.KEY → value, cell-pulses, chip id) of one die's run file."""
    from labctl.runs.store.reader import RunReader
    from labctl.runs.store.schema import Kind
    from labctl.runs.store.summary import run_status

    with RunReader(path) as rd:
        status = run_status(rd)
        figures: dict[str, float] = {}
        for r in rd.of_kind(Kind.RESULT):
            if not 0 <= r.step < len(labels):
                continue
            for k, v in r.payload.items():
                if k not in SKIP_KEYS:
                    _flatten(f"{labels[r.step][0]}.{k}", v, figures)
        n_pulses = int(rd.raw("pulses").shape[0])
        chip_id = str(rd.attrs.get("chip_id", ""))
    return status.split(" ")[0], figures, n_pulses, chip_id


def build_summary(root: Path, manifest: Manifest) -> xr.Dataset:
    import xarray as xr

    labels = _step_labels(manifest)
    n = len(manifest.dies)
    status, message = ["not started"] * n, [""] * n
    wall = np.full(n, np.nan)
    pulses = np.full(n, np.nan)
    values: dict[str, np.ndarray] = {}
    chip_ids = [e.chip_id for e in manifest.dies]
    for i, e in enumerate(manifest.dies):
        out = DieOutcome.load(e.file(root, ".outcome.json"))
        if out is not None:
            status[i], message[i], wall[i] = out.status, out.message, out.wall_s
        path = e.path(root, "run_file")
        if not path.is_file():
            continue
        try:
            st, figs, np_, chip_ids[i] = die_results(path, labels)
        except ConfigError as err:
            status[i], message[i] = "unreadable", str(err)
            continue
        if out is None or st != "truncated":
            status[i] = st if st != "truncated" else "running or killed"
        pulses[i] = np_
        for k, v in figs.items():
            values.setdefault(k, np.full(n, np.nan))[i] = v
    coords = {
        "die": np.arange(n),
        "die_id": ("die", [e.die_id for e in manifest.dies]),
        "x_mm": ("die", np.array([e.x_mm for e in manifest.dies], dtype=float)),
        "y_mm": ("die", np.array([e.y_mm for e in manifest.dies], dtype=float)),
        "seed": ("die", np.array([e.seed for e in manifest.dies], dtype=np.int64)),
        "chip_id": ("die", chip_ids),
    }
    data: dict[str, Any] = {
        "status": ("die", np.array(status, dtype=object)),
        "message": ("die", np.array(message, dtype=object)),
        "wall_s": ("die", wall, {"units": "s", "long_name": "wall time of the die's last "
                                 "attempt"}),
        "cell_pulses": ("die", pulses, {"long_name": "cell-pulses in the die's run file"}),
    }
    step_of = {lab: (i, r) for i, (lab, r) in enumerate(labels)}
    for k in sorted(values, key=lambda s: (step_of.get(s.split(".")[0], (99, ""))[0], s)):
        lab = k.split(".")[0]
        i, routine = step_of.get(lab, (-1, "?"))
        data[k] = ("die", values[k], {"step": i, "step_name": lab, "routine": routine,
                                      "key": k[len(lab) + 1:]})
    return xr.Dataset(data, coords=coords, attrs={
        "title": "labctl campaign summary", "campaign_id": manifest.campaign_id,
        "kind": manifest.kind, "protocol": manifest.protocol_path, "seed": manifest.seed,
        "created_utc": manifest.created_utc, "n_dies": n,
        "wafer": json.dumps(manifest.wafer) if manifest.wafer else "",
        "x_mm": "die centre on the wafer, mm (NaN: a chip not on a simulated wafer)"})


def write_summary(root: Path, manifest: Manifest) -> xr.Dataset:
    """Build the summary and write ``DIR/summary.nc`` by rename (never half a file)."""
    ds = build_summary(root, manifest)
    tmp = root / f".{SUMMARY}.{os.getpid()}.tmp"
    ds.to_netcdf(tmp, engine="h5netcdf")
    os.replace(tmp, root / SUMMARY)
    return ds


def is_campaign(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / MANIFEST).is_file()


def result_names(ds: xr.Dataset) -> list[str]:
    """The per-step result variables (numeric, by die)."""
    return [str(k) for k, v in ds.data_vars.items() if "step" in v.attrs]


def show_lines(root: Path) -> list[str]:
    """``labctl show DIR``: counts, then per result: mean, spread and the extreme dies."""
    manifest = Manifest.load(root)
    ds = build_summary(root, manifest)
    st = [str(s) for s in ds["status"].values]
    kinds = {s: st.count(s) for s in dict.fromkeys(st)}
    lines = [
        f"campaign   {root}  ({manifest.kind}, {len(st)} dies, seed {manifest.seed})",
        f"protocol   {manifest.protocol_path}",
        "dies       " + ", ".join(f"{v} {k}" for k, v in kinds.items()),
    ]
    for i, e in enumerate(manifest.dies):
        if st[i] not in ("completed",):
            msg = str(ds["message"].values[i])
            lines.append(f"  {e.die_id} {st[i]}" + (f": {msg}" if msg else ""))
    ids = [str(x) for x in ds["die_id"].values]
    lines.append(f"{'result':<44} {'mean':>11} {'sd':>10} {'min (die)':>17} {'max (die)':>17}")
    for k in result_names(ds):
        v = np.asarray(ds[k].values, dtype=float)
        ok = np.isfinite(v)
        if not ok.any():
            continue
        lo, hi = int(np.nanargmin(v)), int(np.nanargmax(v))
        sd = float(np.nanstd(v, ddof=1)) if ok.sum() > 1 else math.nan
        lines.append(f"{k:<44} {_g(np.nanmean(v)):>11} {_g(sd):>10} "
                     f"{_g(v[lo]) + ' ' + ids[lo]:>17} {_g(v[hi]) + ' ' + ids[hi]:>17}"
                     + ("" if ok.all() else f"  ({int(ok.sum())} dies)"))
    lines.append(f"summary    {root / SUMMARY}  (xarray.open_dataset(..., engine='h5netcdf'))")
    return lines


def _g(v: float) -> str:
    return "nan" if not math.isfinite(v) else f"{v:.4g}"
