"""Wafer maps of a campaign's results (matplotlib, Agg backend: no display needed).

One PNG per result (``STEP.KEY`` of ``DIR/summary.nc``): each die drawn as a square at its
(x, y) on the wafer outline, coloured by its value; dies without the result (failed, not
started) are hatched grey. Chips that are not on a simulated wafer (a campaign over
stations) are drawn as one bar per chip instead. Every figure's caption names the campaign,
its seed and the command that drew it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labctl.core.errors import ConfigError


def plot_campaign(root: Path, outdir: Path, only: Sequence[str] | None = None) -> list[Path]:
    """Draw every result of the campaign in ``root`` (or the ``only`` ones) into ``outdir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from labctl.runs.campaign_plan import Manifest
    from labctl.runs.campaign_summary import build_summary, result_names

    manifest = Manifest.load(root)
    ds = build_summary(root, manifest)
    names = result_names(ds)
    if only:
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ConfigError(str(root), "--result", f"no result {unknown[0]!r}; the campaign "
                              f"has: {', '.join(names) or 'none yet'}")
        names = list(only)
    outdir.mkdir(parents=True, exist_ok=True)
    x = np.asarray(ds["x_mm"].values, dtype=float)
    y = np.asarray(ds["y_mm"].values, dtype=float)
    ids = [str(s) for s in ds["die_id"].values]
    wafer = json.loads(str(ds.attrs.get("wafer") or "{}"))
    caption = (f"campaign {root.name}: {len(ids)} dies, seed {manifest.seed}, protocol "
               f"{Path(manifest.protocol_path).name} — labctl plot {root}")
    written = []
    for name in names:
        v = np.asarray(ds[name].values, dtype=float)
        fig, ax = plt.subplots(figsize=(6.4, 5.6))
        if np.all(np.isfinite(x)) and np.all(np.isfinite(y)):
            _wafer_map(fig, ax, x, y, v, ids, wafer)
        else:
            _bars(ax, v, ids)
        ax.set_title(f"{name}\n(step {ds[name].attrs.get('step', -1) + 1}, routine "
                     f"{ds[name].attrs.get('routine', '?')})", fontsize=10)
        fig.text(0.01, 0.01, caption, fontsize=6.5, color="0.3")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        path = outdir / f"wafer_{re.sub(r'[^A-Za-z0-9_.#-]+', '_', name)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _pitch(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2:
        return 20.0
    d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    d[d < 1e-9] = np.inf
    return float(d.min())


def _wafer_map(fig: Any, ax: Any, x: np.ndarray, y: np.ndarray, v: np.ndarray,
               ids: list[str], wafer: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Rectangle

    pitch = _pitch(x, y)
    R = float(wafer.get("diameter_mm", 2 * (np.hypot(x, y).max() + pitch))) / 2
    ax.add_patch(Circle((0, 0), R, fill=False, lw=1.2, color="0.2"))
    ok = np.isfinite(v)
    lo, hi = (float(v[ok].min()), float(v[ok].max())) if ok.any() else (0.0, 1.0)
    norm = plt.Normalize(lo, hi if hi > lo else lo + 1e-12)
    cmap = plt.get_cmap("viridis")
    for xi, yi, vi, die in zip(x, y, v, ids):
        face = cmap(norm(vi)) if np.isfinite(vi) else "0.85"
        ax.add_patch(Rectangle((xi - pitch / 2, yi - pitch / 2), pitch, pitch, facecolor=face,
                               edgecolor="0.3", lw=0.5, hatch=None if np.isfinite(vi) else "//"))
        if len(ids) <= 64:
            ax.text(xi, yi, die, ha="center", va="center", fontsize=6, color="w")
    ax.set_xlim(-R * 1.05, R * 1.05)
    ax.set_ylim(-R * 1.05, R * 1.05)
    ax.set_aspect("equal")
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("y (mm)")
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, shrink=0.8)


def _bars(ax: Any, v: np.ndarray, ids: list[str]) -> None:
    ok = np.isfinite(v)
    ax.bar(np.arange(len(v))[ok], v[ok], color="tab:blue")
    ax.bar(np.arange(len(v))[~ok], np.zeros((~ok).sum()), color="0.85")
    ax.set_xticks(np.arange(len(v)), ids, rotation=90, fontsize=7)
    ax.set_xlabel("chip (station)")
