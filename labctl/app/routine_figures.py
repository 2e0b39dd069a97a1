"""The figures of each calibration routine, drawn by ``labctl plot`` from a step's saved
arrays and key figures (:mod:`labctl.app.plots` reads the run file and calls these).

| routine | figures |
|---|---|
| forming | conductance as formed; gate voltage at forming and conductance by outcome |
| verify_write | conductance map; pulses to converge by outcome; G against target and the
  error histogram; spread against conductance |
| compensate | MVM error right after programming, after the wait raw, and compensated;
  per-column gain and offset |
| refresh | RMS error before and after each round; cells refreshed and MVM error |
| characterize | conductance map at the last read (its age in the title); pulses to
  converge; level σ and mean shift against conductance by age; each level's spread by age |
| drift_monitor | mean and σ of the shift against time (log); shift histogram at the end |
| fault_map | fault codes of the block; logical → physical column remap |
| read_map | conductance map; histogram |

Every title says when the read was taken (right after programming, after 1 day, …).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from labctl.app.figure_style import OUTCOME_STYLE, Figures, StepData, age_text, count_hist, uS

__all__ = ["FIGURES", "conductance_map", "generic"]

FigureFn = Callable[[Figures, StepData], None]
VW_OUTCOMES = ((1, "converged"), (2, "gave up"), (3, "stuck"))
FAULTS = ((-1, "unknown", "#d9d9d9"), (0, "ok", "#4c72b0"), (1, "unformed", "#f0e442"),
          (2, "stuck at LRS", "#d62728"), (3, "stuck at HRS", "#2ca02c"))


def conductance_map(figs: Figures, step: StepData, key: str, what: str) -> None:
    """A map in µS, colour scale from the 1st to the 99th percentile: a few stuck-at-LRS
    cells would otherwise squeeze the rest into one colour; they show saturated."""
    g = uS(step.arrays[key])
    fig, ax = figs.new(width_in=5.6, height_in=4.4)
    lo, hi = np.nanpercentile(g, [1, 99]) if g.size else (0.0, 1.0)
    im = ax.imshow(g, cmap="viridis", interpolation="nearest", vmin=lo,
                   vmax=max(hi, lo + 1e-3), aspect="auto")
    fig.colorbar(im, ax=ax, label="conductance (µS)", extend="both")
    ax.set(title=f"{step.label}:\n{what}", xlabel="column in region", ylabel="row in region")
    figs.save(fig, step, f"map_{key}")


def _pulses_hist(figs: Figures, step: StepData, what: str) -> None:
    n, out = step.arrays["n_pulses"].ravel(), step.arrays["outcome"].ravel()
    fig, ax = figs.new()
    bins = np.arange(max(int(n.max()), 1) + 2) - 0.5
    count_hist(ax, [(lab, n[out == c]) for c, lab in VW_OUTCOMES], bins,
               xlabel="pulses per cell")
    ax.set_title(f"{step.label}:\npulses per cell by outcome ({what})")
    figs.save(fig, step, "convergence")


def _spread(figs: Figures, step: StepData, g_S: np.ndarray, age: str) -> None:
    target, out = step.arrays["target_S"].ravel(), step.arrays["outcome"].ravel()
    ok = out == 1
    g, t = g_S.ravel()[ok], target[ok]
    if not ok.any():
        return
    levels = np.unique(t)
    if levels.size > 12:  # continuous targets: ten bins
        edges = np.linspace(t.min(), t.max(), 11)
        idx = np.clip(np.digitize(t, edges) - 1, 0, 9)
        centers = (edges[:-1] + edges[1:]) / 2
    else:
        idx, centers = np.searchsorted(levels, t), levels
    sig = np.array([np.std(g[idx == k] - t[idx == k]) if (idx == k).any() else np.nan
                    for k in range(centers.size)])
    fig, ax = figs.new()
    ax.plot(uS(centers), uS(sig), "o-")
    ax.set(title=f"{step.label}:\nspread of converged cells, read {age}",
           xlabel="target conductance (µS)", ylabel="σ(G − target) (µS)", ylim=(0, None))
    figs.save(fig, step, "spread")


def forming(figs: Figures, step: StepData) -> None:
    a = step.arrays
    conductance_map(figs, step, "g_formed_S", "conductance read right after forming")
    if "outcome" not in a:
        return
    out = a["outcome"].ravel()
    fig, (ax1, ax2) = figs.new(2)
    if "gate_at_form_V" in a:
        gate = a["gate_at_form_V"].ravel()[out == 1]
        gate = gate[np.isfinite(gate)]
        if gate.size:
            bins = np.arange(gate.min() - 0.025, gate.max() + 0.075, 0.05)
            count_hist(ax1, [("formed", gate)], bins, xlabel="gate voltage at forming (V)")
        n_bad = int((out == 2).sum())
        ax1.set_title(f"gate voltage that formed each cell\n"
                      f"({n_bad:,} unformable cell{'' if n_bad == 1 else 's'} not shown)")
    g = uS(a["g_formed_S"]).ravel()
    bins = np.linspace(min(g.min(), 0.0), g.max() + 1e-9, 60)
    count_hist(ax2, [("formed", g[out == 1]), ("unformable", g[out == 2])], bins,
               xlabel="conductance after forming (µS)")
    thr = step.params.get("formed_threshold_S")
    if isinstance(thr, float):
        ax2.axvline(thr * 1e6, color="0.3", ls="--", lw=1, label="formed threshold")
        ax2.legend(fontsize=8)
    ax2.set_title("conductance by outcome")
    fig.suptitle(f"{step.label}: forming", fontsize=11)
    figs.save(fig, step, "forming")


def verify_write(figs: Figures, step: StepData) -> None:
    a = step.arrays
    conductance_map(figs, step, "g_final_S", "conductance after programming, "
                    "read right after")
    _pulses_hist(figs, step, "verify-write")
    target, g, out = uS(a["target_S"]).ravel(), uS(a["g_final_S"]).ravel(), a["outcome"].ravel()
    fig, (ax1, ax2) = figs.new(2)
    for code, lab in VW_OUTCOMES:
        m = out == code
        if m.any():
            ax1.scatter(target[m], g[m], s=3 if code == 1 else 10, alpha=0.5,
                        color=OUTCOME_STYLE[lab], label=f"{lab} ({int(m.sum()):,})")
    lim = (0.0, max(float(np.nanmax(target)), float(np.nanmax(g[out != 4]))) * 1.05)
    ax1.plot(lim, lim, color="0.3", lw=0.8)
    ax1.set(xlim=lim, ylim=lim, xlabel="target conductance (µS)",
            ylabel="conductance read (µS)", title="read against target")
    ax1.legend(fontsize=8, markerscale=2)
    err = (g - target)[out == 1]
    tol = step.params.get("tolerance_S")
    half = max(float(np.abs(err).max()) if err.size else 1.0, 1e-3)
    count_hist(ax2, [("converged", err)], np.linspace(-half, half, 41),
               xlabel="G − target (µS)")
    if isinstance(tol, float):
        for s in (-1, 1):
            ax2.axvline(s * tol * 1e6, color="0.3", ls="--", lw=1)
    ax2.set_title("error of converged cells" + (f" (band ±{tol * 1e6:g} µS)"
                                                 if isinstance(tol, float) else ""))
    fig.suptitle(f"{step.label}: programming accuracy, read right after", fontsize=11)
    figs.save(fig, step, "accuracy")
    _spread(figs, step, a["g_final_S"], "right after programming")


def compensate(figs: Figures, step: StepData) -> None:
    r, a = step.results, step.arrays
    age0 = r.get("baseline_age_s")
    base = ("baseline,\nage " + age_text(float(age0)) if isinstance(age0, float)
            else "baseline\n(age unknown)")
    # (mvm_error_t0: the name in run files written before the figures stated their age)
    keys = (("mvm_error_baseline", base), ("mvm_error_t0", "baseline\n(age unknown)"),
            ("mvm_error_raw", "uncorrected"),
            ("mvm_error_global", "global\nscale"), ("mvm_error_compensated", "global +\ncolumn"))
    have = [(k, lab) for k, lab in keys if isinstance(r.get(k), float)]
    if not have:
        return
    age1 = r.get("measurement_age_s")
    wait = (f"at age {age_text(float(age1))}" if isinstance(age1, float)
            else f"{age_text(float(r.get('wait_s', 0.0)))} after the baseline")
    fig, (ax1, ax2) = figs.new(2)
    vals = [r[k] for k, _ in have]
    colors = ["tab:green", "tab:red", "tab:orange", "tab:blue"][: len(have)]
    bars = ax1.bar([lab for _, lab in have], vals, color=colors)
    ax1.bar_label(bars, fmt="%.3f", fontsize=8)
    ax1.set(ylabel="relative MVM error", ylim=(0, max(vals) * 1.2),
            xlabel="correction applied to the chip's output",
            title=f"‖y − y_ideal‖ / ‖y_ideal‖ before and after\ncompensation, read {wait}")
    ax1.tick_params(axis="x", labelsize=8)
    if "column_gain" in a:
        cols = np.arange(a["column_gain"].size)
        ax2.plot(cols, a["column_gain"], ".-", color="tab:blue", label="gain")
        ax2.set(xlabel="differential column pair", ylabel="per-column gain",
                title="fitted per-column correction")
        ax2.tick_params(axis="y", colors="tab:blue")
        if "column_offset_A" in a:
            tw = ax2.twinx()
            tw.plot(cols, a["column_offset_A"] * 1e6, ".-", color="tab:orange")
            tw.set_ylabel("per-column offset (µA)", color="tab:orange")
            tw.tick_params(axis="y", colors="tab:orange")
    fig.suptitle(f"{step.label}: drift compensation", fontsize=11)
    figs.save(fig, step, "compensation")


def refresh(figs: Figures, step: StepData) -> None:
    a, r = step.arrays, step.results
    if "refresh_rms_before_S" not in a:
        return
    k = np.arange(1, a["refresh_rms_before_S"].size + 1)
    interval = step.params.get("interval_s")
    fig, (ax1, ax2) = figs.new(2)
    w = 0.38
    ax1.bar(k - w / 2, uS(a["refresh_rms_before_S"]), w, label="before", color="tab:red")
    ax1.bar(k + w / 2, uS(a["refresh_rms_after_S"]), w, label="after", color="tab:blue")
    tol = r.get("drift_tolerance_S", step.params.get("drift_tolerance_S"))
    if isinstance(tol, float):
        ax1.axhline(tol * 1e6, color="0.3", ls="--", lw=1, label="drift tolerance")
    when = f" (round k at k × {interval:g} s)" if isinstance(interval, float) else ""
    ax1.set(xlabel=f"refresh round{when}", ylabel="RMS error G − target (µS)",
            title="usable cells before and after", xticks=k, xlim=(0.2, k.size + 0.8))
    ax1.legend(fontsize=8)
    ax2.bar(k, 100 * a["refresh_fraction"], 0.5, color="tab:gray")
    ax2.set(xlabel="refresh round", ylabel="share of cells re-programmed (%)", xticks=k,
            title="share of cells refreshed", ylim=(0, 105), xlim=(0.2, k.size + 0.8))
    mvm = r.get("mvm_error_after")
    if isinstance(mvm, list) and len(mvm) == k.size:
        tw = ax2.twinx()
        tw.plot(k, mvm, "o-", color="tab:blue")
        tw.set_ylabel("relative MVM error after", color="tab:blue")
        tw.set_ylim(0, max(max(mvm) * 1.3, 1e-3))
    fig.suptitle(f"{step.label}: refresh", fontsize=11)
    figs.save(fig, step, "refresh")


def characterize(figs: Figures, step: StepData) -> None:
    a = step.arrays
    t = a.get("level_t_s", np.array([0.0]))
    last = age_text(float(t[-1]))
    conductance_map(figs, step, "g_map_S", f"conductance read {last} after programming"
                    if t[-1] > 0 else "conductance read right after programming")
    if "n_pulses" in a:
        _pulses_hist(figs, step, "verify-write to the levels")
    if "level_std_S" in a:
        fig, (ax1, ax2) = figs.new(2)
        for ti, sd, mean in zip(t, a["level_std_S"], a["level_mean_S"], strict=True):
            lab = age_text(float(ti))
            ax1.plot(uS(a["levels_S"]), uS(sd), "o-", label=lab)
            ax2.plot(uS(a["levels_S"]), uS(mean - a["levels_S"]), "o-", label=lab)
        ax1.set(xlabel="level target (µS)", ylabel="σ over cells (µS)", ylim=(0, None),
                title="spread of each level")
        ax2.axhline(0, color="0.3", lw=0.8)
        ax2.set(xlabel="level target (µS)", ylabel="mean − target (µS)",
                title="mean shift of each level")
        ax1.legend(title="read", fontsize=8)
        fig.suptitle(f"{step.label}: levels by age of the read", fontsize=11)
        figs.save(fig, step, "level_spread")
    if {"char_g_S", "char_level", "char_ok"} <= a.keys():
        _levels_by_age(figs, step, t)


def _levels_by_age(figs: Figures, step: StepData, t: np.ndarray) -> None:
    a = step.arrays
    g, level, ok = uS(a["char_g_S"]), a["char_level"], a["char_ok"].astype(bool)
    levels = uS(a["levels_S"])
    n = g.shape[0]
    fig, axes = figs.new(n, width_in=3.3, height_in=3.6, sharey=True)
    bins = np.linspace(min(0.0, float(np.nanmin(g[:, ok]))), float(np.nanmax(g[:, ok])) + 1, 90)
    cmap = figs.plt.get_cmap("viridis")
    for i, ax in enumerate(np.atleast_1d(axes)):
        for j, lv in enumerate(levels):
            ax.hist(g[i, ok & (level == j)], bins=bins, histtype="stepfilled", alpha=0.6,
                    color=cmap(j / max(levels.size - 1, 1)))
            ax.axvline(lv, color="0.3", lw=0.5, ls=":")
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.7)
        ax.set(title=f"read {age_text(float(t[i]))}" if t[i] > 0 else "read right after",
               xlabel="conductance (µS)")
    np.atleast_1d(axes)[0].set_ylabel("cells (log scale)")
    fig.suptitle(f"{step.label}: each level's spread by age of the read (dotted: targets; "
                 f"{int(ok.sum()):,} converged cells)", fontsize=11)
    figs.save(fig, step, "levels_by_age")


def drift_monitor(figs: Figures, step: StepData) -> None:
    a = step.arrays
    if "drift_t_s" not in a:
        return
    t = a["drift_t_s"]
    fig, (ax1, ax2) = figs.new(2)
    ax1.plot(t, uS(a["drift_mean_shift_S"]), "o-", label="mean shift")
    ax1.plot(t, uS(a["drift_std_S"]), "s-", label="σ of the shift")
    ax1.set_xscale("log")
    ax1.axhline(0, color="0.3", lw=0.8)
    ax1.set(xlabel="time after the first read (s, log scale)", ylabel="conductance shift (µS)",
            title="relaxation")
    ax1.legend(fontsize=8)
    if "drift_g_S" in a:
        shift = uS(a["drift_g_S"][-1] - a["drift_g_S"][0])
        count_hist(ax2, [("converged", shift)], 50, xlabel="G(end) − G(first read) (µS)")
        ax2.get_legend().remove()
        ax2.set_title(f"shift of each cell after {age_text(float(t[-1] - t[0]))}")
    fig.suptitle(f"{step.label}: drift", fontsize=11)
    figs.save(fig, step, "drift")


def fault_map(figs: Figures, step: StepData) -> None:
    a = step.arrays
    if "fault_map" not in a:
        return
    from matplotlib.colors import BoundaryNorm, ListedColormap

    fm = a["fault_map"]
    fig, (ax1, ax2) = figs.new(2, width_in=5.8, height_in=4.2)
    cmap = ListedColormap([c for _, _, c in FAULTS])
    norm = BoundaryNorm(np.arange(-1.5, 4.0), cmap.N)
    ax1.imshow(fm, cmap=cmap, norm=norm, interpolation="nearest", aspect="auto")
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=f"{lab} ({int((fm == code).sum()):,})")
               for code, lab, c in FAULTS if (fm == code).any() or code in (0, 2, 3)]
    ax1.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14),
               ncol=3, frameon=False)
    region = step.params.get("region", {})
    cols = region.get("cols") if isinstance(region, dict) else None
    if isinstance(cols, list) and len(cols) == 2:
        ax1.axvline(cols[1] - cols[0] - 0.5, color="k", lw=1)
        ax1.text(cols[1] - cols[0], -1, " spares", fontsize=8, va="bottom")
    ax1.set(xlabel="column (region, then spares)", ylabel="row in region",
            title="fault codes (cells)")
    if "remap_physical" in a:
        phys = a["remap_physical"]
        logical = np.arange(phys.size)
        c0 = int(cols[0]) if isinstance(cols, list) else 0
        moved = phys != logical + c0
        ax2.plot(logical, phys, ".", ms=3, color="tab:blue", label="kept in place")
        ax2.plot(logical[moved], phys[moved], "o", ms=5, color="tab:red",
                 label=f"moved to a spare ({int(moved.sum())})")
        ax2.set(xlabel="logical column", ylabel="physical column", title="column remap")
        ax2.legend(fontsize=8)
    fig.suptitle(f"{step.label}: fault map", fontsize=11)
    figs.save(fig, step, "fault_map")


def read_map(figs: Figures, step: StepData) -> None:
    if "g_map_S" not in step.arrays:
        return
    conductance_map(figs, step, "g_map_S", "conductance map")
    fig, ax = figs.new()
    count_hist(ax, [("converged", uS(step.arrays["g_map_S"]).ravel())], 80,
               xlabel="conductance (µS)")
    ax.get_legend().remove()
    ax.set_title(f"{step.label}:\nconductance histogram")
    figs.save(fig, step, "histogram")


FIGURES: dict[str, FigureFn] = {
    "forming": forming, "verify_write": verify_write, "compensate": compensate,
    "refresh": refresh, "characterize": characterize, "drift_monitor": drift_monitor,
    "fault_map": fault_map, "read_map": read_map,
}
"""Routine name → its figures. Routines not listed get maps of any ``g_*_S`` array and
the inference figures (:func:`labctl.inference.plots.plot_inference`)."""


def generic(figs: Figures, step: StepData) -> None:
    """Maps of any conductance map a routine without figures of its own saved."""
    for key in ("g_final_S", "g_map_S", "g_formed_S"):
        if key in step.arrays and step.arrays[key].ndim == 2:
            conductance_map(figs, step, key, key)
