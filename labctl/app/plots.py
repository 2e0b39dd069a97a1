"""Figures of a run file (matplotlib, Agg backend: no display needed).

Each figure is drawn only when the run holds its data: conductance maps (any step that saved
``g_final_S``, ``g_map_S`` or ``g_formed_S``), the verify-write convergence histogram
(``n_pulses`` by ``outcome``), spread against conductance (``g_final_S`` / ``g_map_S`` of
the cells a verify-write step converged, grouped by ``target_S``), level spread against
conductance at each read time (``level_std_S`` of a characterize step), drift curves
(``drift_*``) and the inference routines' figures (``recon_*``, ``samples_*``,
``recall_by_chunk_*``; :mod:`labctl.inference.plots`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from labctl.runs.store.reader import RunReader
from labctl.runs.store.schema import Kind

MAP_KEYS = ("g_final_S", "g_map_S", "g_formed_S")
MAP_TITLES = {"g_final_S": "conductance after programming", "g_map_S": "conductance map",
              "g_formed_S": "conductance as formed"}


def step_arrays(rd: RunReader) -> dict[int, dict[str, np.ndarray]]:
    """step → name → the latest saved array of that name."""
    out: dict[int, dict[str, np.ndarray]] = {}
    for r in rd.of_kind(Kind.ARRAY):
        for name in r.array_names():
            out.setdefault(r.step, {})[name] = r.array(name)
    return out


def step_results(rd: RunReader) -> dict[int, dict[str, Any]]:
    """step → its latest RESULT payload."""
    return {r.step: r.payload for r in rd.of_kind(Kind.RESULT)}


def plot_run(rd: RunReader, outdir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from labctl.inference.plots import plot_inference

    outdir.mkdir(parents=True, exist_ok=True)
    arrays = step_arrays(rd)
    results = step_results(rd)
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        p = outdir / name
        fig.tight_layout()
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)

    last_target: np.ndarray | None = None
    ok: np.ndarray | None = None
    for step, arr in sorted(arrays.items()):
        if "target_S" in arr:
            last_target = arr["target_S"]
            ok = arr["outcome"] == 1 if "outcome" in arr else np.ones(last_target.shape, bool)
        for key in MAP_KEYS:
            if key in arr:
                fig, ax = plt.subplots(figsize=(5, 4))
                g_uS = np.asarray(arr[key], dtype=float) * 1e6
                # colour scale from the 1st–99th percentile: a few stuck-at-LRS cells would
                # otherwise squeeze the rest of the map into one colour; they show saturated
                lo, hi = np.nanpercentile(g_uS, [1, 99]) if g_uS.size else (0.0, 1.0)
                im = ax.imshow(g_uS, cmap="viridis", interpolation="nearest", vmin=lo,
                               vmax=max(hi, lo + 1e-3))
                fig.colorbar(im, ax=ax, label="conductance (µS)", extend="both")
                ax.set(title=f"step {step + 1}: {MAP_TITLES.get(key, key)}", xlabel="column",
                       ylabel="row")
                save(fig, f"step{step + 1}_map_{key}.png")
        if "n_pulses" in arr and "outcome" in arr and "target_S" in arr:
            fig, ax = plt.subplots(figsize=(5, 3.5))
            n, out = arr["n_pulses"].ravel(), arr["outcome"].ravel()
            bins = [k - 0.5 for k in range(max(int(n.max()), 1) + 2)]
            for code, label in ((1, "converged"), (2, "gave up"), (3, "stuck")):
                if (out == code).any():
                    ax.hist(n[out == code], bins=bins, alpha=0.7, label=label)
            ax.set(title=f"step {step + 1}: pulses to converge", xlabel="pulses per cell",
                   ylabel="cells")
            ax.legend()
            save(fig, f"step{step + 1}_convergence.png")
        g = arr.get("g_final_S", arr.get("g_map_S"))
        if (g is not None and last_target is not None and ok is not None
                and g.shape == last_target.shape and ok.any()):
            _spread(plt, save, step, last_target[ok], g[ok])
        if "level_std_S" in arr and "levels_S" in arr:
            fig, ax = plt.subplots(figsize=(5, 3.5))
            for t, sd in zip(arr["level_t_s"], arr["level_std_S"], strict=True):
                ax.plot(arr["levels_S"] * 1e6, sd * 1e6, "o-", label=f"t = {t:g} s")
            ax.set(title=f"step {step + 1}: level spread vs conductance",
                   xlabel="level target G (µS)", ylabel="σ over cells (µS)")
            ax.legend()
            save(fig, f"step{step + 1}_level_spread.png")
        if "drift_t_s" in arr:
            fig, ax = plt.subplots(figsize=(5, 3.5))
            t = arr["drift_t_s"]
            ax.semilogx(t, arr["drift_mean_shift_S"] * 1e6, "o-", label="mean shift")
            ax.semilogx(t, arr["drift_std_S"] * 1e6, "s-", label="spread of the shift (σ)")
            ax.set(title=f"step {step + 1}: relaxation", xlabel="time after programming (s)",
                   ylabel="µS")
            ax.legend()
            save(fig, f"step{step + 1}_drift.png")
        plot_inference(plt, save, step, arr, results.get(step, {}))
    return written


def _spread(plt: Any, save: Any, step: int, target: np.ndarray, g: np.ndarray) -> None:
    levels = np.unique(target)
    if levels.size > 12:  # continuous targets: bin them
        edges = np.linspace(target.min(), target.max(), 11)
        idx = np.clip(np.digitize(target, edges) - 1, 0, 9)
        centers = (edges[:-1] + edges[1:]) / 2
    else:
        idx = np.searchsorted(levels, target)
        centers = levels
    sig = np.array([np.std(g[idx == k] - target[idx == k]) if (idx == k).any() else np.nan
                    for k in range(centers.size)])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(centers * 1e6, sig * 1e6, "o-")
    ax.set(title=f"step {step + 1}: spread vs conductance (converged cells)",
           xlabel="target G (µS)",
           ylabel="σ(G − target) (µS)")
    save(fig, f"step{step + 1}_spread.png")
