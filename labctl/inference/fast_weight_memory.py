"""Fast weights: an inner gated MLP written during inference, then queried.

After the fast-weight / test-time-training line summarised in docs/references.md ("Fast
weights"): an inner SwiGLU MLP ``f(k) = W2ᵀ(silu(W1ᵀk) ⊙ W3ᵀk)`` is updated on the fly on
key/value pairs with Newton–Schulz-orthogonalized gradient steps (the Muon iteration,
Jordan et al. 2024, as used by large-chunk test-time training, Zhang et al. 2025) and then
queried. Keys and values come from a fixed random projection of a token stream. On RRAM
every update is a programming operation: the host keeps the float copy it computes the
update with, and the chip's cells whose target moved by more than a threshold are
re-programmed through the ``program_fn`` seam; queries run on the chip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from labctl.core.backend import Backend
from labctl.inference.analog import AnalogLinear
from labctl.inference.layers import Array
from labctl.inference.mapping import (
    DifferentialMapping,
    ProgramFn,
    TileAllocator,
    require_program_fn,
)

__all__ = ["FWParams", "newton_schulz", "run_fast_weights"]

Progress = Callable[[int, int, str], None]


def newton_schulz(g: Array, steps: int = 5, eps: float = 1e-7) -> Array:
    """Approximate the orthogonal polar factor of ``g`` (Muon's quintic iteration,
    coefficients (3.4445, −4.7750, 2.0315), Jordan et al. 2024)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g / (np.linalg.norm(g) + eps)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        m = x @ x.T
        x = a * x + (b * m + c * m @ m) @ x
    return x.T if tall else x


@dataclass
class FWParams:
    vocab: int = 4096
    """Token vocabulary (chance recall 1/vocab; keys are distinct tokens)."""
    n_pairs: int = 1024
    d_model: int = 256
    """Token embedding width; keys span at most this many dimensions."""
    d_key: int = 128
    hidden: int = 256
    """The state is 3·d_key·hidden weights (98 k here) against a KV cache of
    2·d_key·n_pairs values (262 k at 1,024 pairs): the memory must compress."""
    chunk: int = 256
    """Tokens per update (one programming round per chunk; LaCT's point is large chunks)."""
    lr: float = 0.2
    write_threshold_S: float = 0.5e-6
    """Cells whose new target differs by less than this are not rewritten."""
    headroom: float = 1.5
    """Column scale grows to headroom × max |W| when a weight outgrows it."""
    replicas: int = 4
    """Row copies per input: the copies' independent programming and relaxation errors
    average down (the multi-cell remedy). Every copy is rewritten on every update, so
    writes cost ``replicas`` × more. Measured on chip seed 0 at 1,024 pairs, 1 h after the
    last write (simulator with a frozen clock): recall 0.58 / 0.70 / 0.76 with 1 / 2 / 4
    copies (float 0.82)."""
    curve: tuple[int, ...] = (256, 512)
    """Further episodes (pair counts) for the recall-vs-N curve, on the same cells."""
    write_s_per_cell: float = 1.3e-6
    """Device time of one cell's verify-write: the chip's clock advances by this × the
    cells each programming round rewrites, so earlier writes relax while later ones land.
    1.3 µs is what the simulator's ledger charges per rewritten cell at ``default_180nm``
    (pulses and verify reads of a batched gate ladder); a number, not the ledger itself, so
    that the run is the same over the wire, where device time is the instruments' own."""
    age_at_use_s: float = 3600.0
    """Wait between the last write and the queries (relaxation)."""
    n_cal: int = 1024
    """Calibration keys for the query-time ADC ranges and per-column affine trims: keys of
    tokens that are *not* in the episode (independent of the queries), through the same
    projection."""
    query_repeats: int = 2
    """MVMs averaged per query (read averaging: white read and periphery noise fall as
    1/√n; the query's device time and energy grow n-fold). Measured at 1,024 pairs, 1 h,
    calibration on keys never queried: chip / float recall on chip seed 0 0.890 with one
    MVM, 0.910 with two; with two over chips 0–4: 0.910, 0.919, 0.939, 0.912, 0.928
    (single 1,024-pair episodes on fresh cells)."""
    seed: int = 0


def _silu(z: Array) -> tuple[Array, Array]:
    s = 0.5 * (1.0 + np.tanh(0.5 * z))
    return z * s, s + z * s * (1.0 - s)


class _Stream:
    """Tokens, keys, values and the value codebook of one associative-recall episode."""

    def __init__(self, p: FWParams) -> None:
        rng = np.random.default_rng(p.seed)
        emb = rng.normal(size=(p.vocab, p.d_model))
        pk = rng.normal(size=(p.d_model, p.d_key)) / np.sqrt(p.d_model)
        pv = rng.normal(size=(p.d_model, p.d_key)) / np.sqrt(p.d_model)
        self.key_tok = rng.choice(p.vocab, p.n_pairs, replace=False)
        self.val_tok = rng.integers(0, p.vocab, p.n_pairs)
        k = emb[self.key_tok] @ pk
        self.keys = k / np.linalg.norm(k, axis=1, keepdims=True)
        cb = emb @ pv
        self.codebook = cb / np.linalg.norm(cb, axis=1, keepdims=True)
        self.values = self.codebook[self.val_tok]
        # calibration keys: other tokens' keys, never queried (own generator: the episode's
        # draws above stay as they were)
        rest = np.setdiff1d(np.arange(p.vocab), self.key_tok)
        cal_tok = np.random.default_rng(p.seed + 2).choice(rest, min(p.n_cal, rest.size),
                                                           replace=False)
        kc = emb[cal_tok] @ pk
        if not len(kc):  # every token is a key: fresh embeddings of the same distribution
            kc = np.random.default_rng(p.seed + 3).normal(size=(p.n_cal, p.d_model)) @ pk
        self.cal_keys = kc / np.linalg.norm(kc, axis=1, keepdims=True)
        w_rng = np.random.default_rng(p.seed + 1)
        self.w1 = w_rng.normal(size=(p.d_key, p.hidden)) / np.sqrt(p.d_key) * 4.0
        self.w3 = w_rng.normal(size=(p.d_key, p.hidden)) / np.sqrt(p.d_key) * 4.0
        self.w2 = np.zeros((p.hidden, p.d_key))

    def decode(self, out: Array) -> npt.NDArray[np.int64]:
        return np.argmax(out @ self.codebook.T, axis=1).astype(np.int64)


def _forward(k: Array, w1: Array, w3: Array, w2: Array) -> tuple[Array, ...]:
    a1, a3 = k @ w1, k @ w3
    s1, ds1 = _silu(a1)
    h = s1 * a3
    return h @ w2, h, a1, a3, s1, ds1


def _update(k: Array, v: Array, w1: Array, w3: Array, w2: Array, lr: float,
            acts: tuple[Array, ...] | None = None) -> tuple[Array, Array, Array]:
    """One orthogonalized step on the loss −Σ⟨f(k), v⟩ (dot-product TTT loss).
    ``acts`` are the forward activations (from the chip when it runs the forward)."""
    _, h, _a1, a3, s1, ds1 = acts if acts is not None else _forward(k, w1, w3, w2)
    g_out = -v / len(k)
    g2 = h.T @ g_out
    gh = g_out @ w2.T
    g1 = k.T @ (gh * a3 * ds1)
    g3 = k.T @ (gh * s1)
    upd = [newton_schulz(g) if np.any(g) else g for g in (g1, g3, g2)]
    return w1 - lr * upd[0], w3 - lr * upd[1], w2 - lr * upd[2]


def _by_chunk(hit: npt.NDArray[np.bool_], chunks: list[slice]) -> Array:
    """Recall of each chunk's pairs at the end, in write order (a forgetting curve)."""
    return np.array([float(np.mean(hit[c])) for c in chunks])


def _float_episode(p: FWParams) -> tuple[_Stream, list[slice], npt.NDArray[np.bool_]]:
    s = _Stream(p)
    chunks = [slice(i, min(p.n_pairs, i + p.chunk)) for i in range(0, p.n_pairs, p.chunk)]
    w1, w3, w2 = s.w1.copy(), s.w3.copy(), s.w2.copy()
    for c in chunks:
        w1, w3, w2 = _update(s.keys[c], s.values[c], w1, w3, w2, p.lr)
    return s, chunks, s.decode(_forward(s.keys, w1, w3, w2)[0]) == s.val_tok


def _chip_episode(backend: Backend, p: FWParams, pf: ProgramFn,
                  progress: Progress | None = None) -> dict[str, Any]:
    """One episode on the chip: program the initial inner MLP (one-time cost), write the
    pairs chunk by chunk — each update re-programs the cells whose target moved and the
    chip's clock advances by their write time (``write_s_per_cell``), so earlier writes
    relax while later ones land — then wait ``age_at_use_s`` and query every key through
    the chip."""
    s = _Stream(p)
    chunks = [slice(i, min(p.n_pairs, i + p.chunk)) for i in range(0, p.n_pairs, p.chunk)]
    alloc = TileAllocator(backend.chip)
    mapping = DifferentialMapping(percentile=100.0)
    before = backend.ledger.snapshot()
    c1, c3, c2 = s.w1.copy(), s.w3.copy(), s.w2.copy()
    # W2 starts at zero: program it with the scale it will need (headroom over 1 step)
    layers = [AnalogLinear(w, None, backend, alloc, pf, mapping, replicas=p.replicas)
              for w in (c1, c3, c2 + 1e-3)]
    initial = backend.ledger.since(before)
    backend.clock.wait(p.write_s_per_cell * sum(la.cells_used() for la in layers))
    before = backend.ledger.snapshot()
    writes = [np.zeros((la.n_phys, 2 * la.n_out), dtype=np.int64) for la in layers]
    for k, c in enumerate(chunks):
        kk = s.keys[c]
        for la in layers[:2]:
            la.calibrate(s.keys[: c.stop])
        a1, a3 = layers[0].forward(kk), layers[1].forward(kk)
        s1, ds1 = _silu(a1)
        h = s1 * a3
        acts = (h @ c2, h, a1, a3, s1, ds1) if k > 0 else None
        c1, c3, c2 = _update(kk, s.values[c], c1, c3, c2, p.lr, acts)
        n_cells = 0
        for la, w, wr in zip(layers, (c1, c3, c2), writes):
            new = la.reprogram(w, pf, threshold_S=p.write_threshold_S, headroom=p.headroom)
            wr += new
            n_cells += int(new.sum())
        backend.clock.wait(p.write_s_per_cell * n_cells)
        if progress is not None:
            progress(k + 1, len(chunks), f"fast weights: {p.n_pairs} pairs, writing")
    write = backend.ledger.since(before)
    backend.clock.wait(p.age_at_use_s)
    before = backend.ledger.snapshot()
    # input/ADC ranges and the per-column affine trims against the host's float copy
    # (HERMES-style calibration, Le Gallo et al. 2023) at the age of use, on calibration
    # keys independent of the queries; queries average ``query_repeats`` MVMs
    for la in layers:
        la.repeats = p.query_repeats
    for la in layers[:2]:
        la.calibrate(s.cal_keys)
        la.fit_affine(s.cal_keys)
    h_cal = _silu(layers[0].forward(s.cal_keys))[0] * layers[1].forward(s.cal_keys)
    layers[2].calibrate(h_cal)
    layers[2].fit_affine(h_cal)
    h = _silu(layers[0].forward(s.keys))[0] * layers[1].forward(s.keys)
    hit = s.decode(layers[2].forward(h)) == s.val_tok
    query = backend.ledger.since(before)
    # the same query in float on the weights the cells hold now (re-read): what the cells'
    # static error alone costs, apart from the periphery's noise and quantization
    for la in layers:
        la.refresh_readback()
    e1, e3, e2 = (la.weight_estimate() for la in layers)
    hit_rb = s.decode(_forward(s.keys, e1, e3, e2)[0]) == s.val_tok
    return {"hit": hit, "hit_readback": hit_rb, "chunks": chunks, "initial": initial,
            "write": write, "query": query,
            "writes": np.concatenate([w.reshape(-1) for w in writes])}


def run_fast_weights(backend: Backend | None, params: FWParams | dict[str, Any] | None = None,
                     program_fn: ProgramFn | None = None,
                     progress: Progress | None = None) -> dict[str, Any]:
    """Write ``n_pairs`` key/value pairs chunk by chunk, then query every key; the same for
    each pair count of ``curve`` (a fresh episode each, same cells). Float always; with a
    backend also on the chip, with the one-time programming cost apart from the per-token
    update cost."""
    p = params if isinstance(params, FWParams) else FWParams(**(params or {}))
    pf = require_program_fn(program_fn) if backend is not None else None
    ns = sorted({n for n in p.curve if 0 < n < p.n_pairs} | {p.n_pairs})
    eps = {n: replace(p, n_pairs=n, seed=p.seed if n == p.n_pairs else p.seed + 7919 * n)
           for n in ns}
    _, chunks, hit_f = _float_episode(p)
    state = 3 * p.d_key * p.hidden
    out: dict[str, Any] = {
        "params": asdict(p),
        "recall_float": float(np.mean(hit_f)),
        "recall_chance": 1.0 / p.vocab,
        "recall_by_chunk_float": _by_chunk(hit_f, chunks),
        "curve_n": np.asarray(ns),
        "curve_recall_float": np.array([float(np.mean(_float_episode(eps[n])[2]))
                                        for n in ns]),
        "state_over_kv_cache": state / (2 * p.d_key * p.n_pairs),
    }
    out.update({f"recall_float_n{n}": float(v) for n, v in zip(ns, out["curve_recall_float"])})
    if backend is None or pf is None:
        return out

    runs = {}
    for n in ns:  # the largest episode last: its cells carry the others' write history
        runs[n] = _chip_episode(backend, eps[n], pf, progress)
    r = runs[p.n_pairs]
    n_tok = 2 * p.n_pairs  # a key token and a value token per pair
    write, initial = r["write"], runs[ns[0]]["initial"]
    out.update({
        "recall_chip": float(np.mean(r["hit"])),
        "recall_chip_readback": float(np.mean(r["hit_readback"])),
        "recall_by_chunk_chip": _by_chunk(r["hit"], r["chunks"]),
        "curve_recall_chip": np.array([float(np.mean(runs[n]["hit"])) for n in ns]),
        "writes_per_cell": r["writes"],
        "age_at_use_s": p.age_at_use_s,
        "onetime_pulses": initial.get("pulses", 0.0),
        "onetime_energy_J": initial.get("energy_J", 0.0),
        "onetime_device_time_s": initial.get("device_time_s", 0.0),
        "write_pulses_per_token": write.get("pulses", 0.0) / n_tok,
        "write_energy_J_per_token": write.get("energy_J", 0.0) / n_tok,
        "write_device_time_s_per_token": write.get("device_time_s", 0.0) / n_tok,
        "writes_per_cell_mean": float(r["writes"].mean()),
        "writes_per_cell_max": float(r["writes"].max()),
        "n_updates": len(r["chunks"]),
        "ledger_onetime": initial,
        "ledger_write": write,
        "ledger_query": r["query"],
    })
    out.update({f"recall_chip_n{n}": float(v) for n, v in zip(ns, out["curve_recall_chip"])})
    return out
