"""Figures of the inference routines' arrays, drawn by ``labctl plot`` (:mod:`labctl.app.plots`).

- ``recon_*`` (neural field, Yu et al. 2026): one panel truth / prior / FBP / float / chip,
  each titled with its PSNR against the truth;
- ``samples_*`` (diffusion, Yang et al. 2026): scatter plots of true, float and chip samples
  (unconditional), and of the guided float / chip samples coloured by class;
- ``recall_by_chunk_*`` (fast weights): recall of each chunk's pairs by write position,
  float and chip, with chance (1 / vocab, from the step's results) as a line; and the
  histogram of writes per cell (``writes_per_cell``, log counts).

Figures use constrained layout (``labctl plot`` saves them with a footer naming the run), so
tick labels of the side-by-side sample panels are not cut. Sample coordinates are the
dimensionless data coordinates of the two-dimensional toy distributions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from labctl.inference.tomography import psnr

__all__ = ["plot_inference"]

SaveFn = Callable[[Any, str], None]
_RECON = ("truth", "prior", "fbp", "float", "chip", "chip_residual", "chip_haq",
          "chip_differential")
_SCATTER = (("true", "true data"), ("float", "float network"), ("chip", "chip (stepped)"),
            ("chip_continuous", "chip, continuous-time loop"))


def plot_inference(plt: Any, save: SaveFn, step: int, arr: Mapping[str, np.ndarray],
                   results: Mapping[str, Any]) -> None:
    """Draw whichever inference figures ``arr`` (one step's arrays) has data for."""
    label = f"step {step + 1}"
    recon = [k for k in _RECON if f"recon_{k}" in arr]
    if recon:
        truth = arr.get("recon_truth")
        fig, axes = plt.subplots(1, len(recon), figsize=(2.6 * len(recon), 2.9))
        for ax, k in zip(np.atleast_1d(axes), recon):
            img = arr[f"recon_{k}"]
            ax.imshow(img[img.shape[0] // 2] if img.ndim == 3 else img, cmap="gray",
                      vmin=0.0, vmax=1.0, interpolation="nearest")
            sub = "" if truth is None or k == "truth" else f"\n{psnr(img, truth):.1f} dB"
            ax.set_title(f"{k}{sub}", fontsize=9)
            ax.set_axis_off()
        fig.suptitle(f"{label}: neural-field CT reconstruction (PSNR vs truth; a volume "
                     "shows its middle slice)", fontsize=10)
        save(fig, f"step{step + 1}_reconstruction.png")
    scat = [(k, t) for k, t in _SCATTER if f"samples_{k}" in arr]
    if scat:
        fig, axes = plt.subplots(1, len(scat), figsize=(3.3 * len(scat), 3.6),
                                 sharex=True, sharey=True, layout="constrained")
        for ax, (k, title) in zip(np.atleast_1d(axes), scat):
            x = arr[f"samples_{k}"]
            ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.5)
            swd = results.get("swd_float" if k == "float" else f"swd_{k}")
            ax.set_title(title + (f"\nSWD {swd:.3g}" if isinstance(swd, float) else ""),
                         fontsize=9)
            ax.set_aspect("equal")
            ax.set_xlabel("x₁")
        np.atleast_1d(axes)[0].set_ylabel("x₂")
        n = arr[f"samples_{scat[-1][0]}"].shape[0]
        fig.suptitle(f"{label}: diffusion samples, unconditional ({n:,} per panel; SWD: "
                     "sliced Wasserstein distance to the data)", fontsize=10)
        save(fig, f"step{step + 1}_samples.png")
    cond = [k for k in ("cond_float", "cond_chip") if f"samples_{k}" in arr]
    if cond and "samples_cond_labels" in arr:
        lab = arr["samples_cond_labels"]
        fig, axes = plt.subplots(1, len(cond), figsize=(3.4 * len(cond), 3.7),
                                 sharex=True, sharey=True, layout="constrained")
        for ax, k in zip(np.atleast_1d(axes), cond):
            x = arr[f"samples_{k}"]
            ax.scatter(x[:, 0], x[:, 1], c=lab, s=2, alpha=0.5, cmap="coolwarm")
            acc = results.get(f"cfg_accuracy_{k.removeprefix('cond_')}")
            ax.set_title(k.replace("_", " ") + (f"\nclass accuracy {acc:.3f}"
                                                if isinstance(acc, float) else ""), fontsize=9)
            ax.set_aspect("equal")
            ax.set_xlabel("x₁")
        np.atleast_1d(axes)[0].set_ylabel("x₂")
        fig.suptitle(f"{label}: classifier-free guided samples, coloured by the class asked "
                     f"for ({lab.size:,} per panel)", fontsize=10)
        save(fig, f"step{step + 1}_samples_guided.png")
    curves = [k for k in ("float", "chip") if f"recall_by_chunk_{k}" in arr]
    if curves:
        fig, ax = plt.subplots(figsize=(5.4, 3.8), layout="constrained")
        for k in curves:
            y = arr[f"recall_by_chunk_{k}"]
            ax.plot(np.arange(1, y.size + 1), y, "o-", label=k)
        chance = results.get("recall_chance")
        if isinstance(chance, float):
            ax.axhline(chance, color="gray", ls="--", label="chance")
        ax.set(title=f"{label}: fast-weight recall by write position",
               xlabel="chunk, in the order written", ylabel="recall at the end (fraction)",
               ylim=(-0.02, 1.02))
        ax.legend()
        save(fig, f"step{step + 1}_recall.png")
    if "writes_per_cell" in arr:
        w = arr["writes_per_cell"].ravel()
        fig, ax = plt.subplots(figsize=(5.4, 3.8), layout="constrained")
        ax.hist(w, bins=np.arange(w.max() + 2) - 0.5, histtype="stepfilled")
        ax.set_yscale("log")
        ax.set(title=f"{label}: programming rounds per cell ({w.size:,} cells)",
               xlabel="writes per cell", ylabel="cells (log scale)")
        save(fig, f"step{step + 1}_writes_per_cell.png")
