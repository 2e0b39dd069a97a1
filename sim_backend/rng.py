"""Counter-based random numbers keyed by (seed, cell, event, stream).

The simulator never consumes one random stream in call order. Every random quantity is a
pure function of a key: the seed, the cell's global index, that cell's event count and a
stream id naming what the number is for. So a cell's history does not depend on how
operations were batched or ordered, and the direct path and the wire path agree bit for bit
(docs/design.md, "Determinism").

The hash is the 64-bit finalizer of MurmurHash3 (``fmix64``, public domain, Austin Appleby)
applied over the key words — the same construction as SplitMix64's output function
(Steele, Lea & Flood, OOPSLA 2014). numpy's uint64 arithmetic wraps modulo 2**64, which is
exactly what these mixers need. Uniforms use the top 53 bits; normals use Box–Muller on two
independent streams.
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]

_C1 = np.uint64(0xFF51AFD7ED558CCD)
_C2 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_K_CELL = np.uint64(0xD6E8FEB86659FD93)
_K_EVENT = np.uint64(0xA0761D6478BD642F)
_K_STREAM = np.uint64(0xE7037ED1A0B428DB)
_S33 = np.uint64(33)
_S11 = np.uint64(11)


class Stream(enum.IntEnum):
    """What a random number is for. Never renumber: it would change every seeded result."""

    # device-to-device (static, event 0)
    D2D_FORM_V = 1
    D2D_SET_V = 2
    D2D_RESET_V = 3
    D2D_SET_GAIN = 4
    D2D_RESET_GAIN = 5
    D2D_CAP = 6
    D2D_AS_FORMED = 7
    D2D_HRS = 8
    D2D_STUCK = 9
    D2D_STUCK_G = 10
    D2D_RELAX = 11
    D2D_FORM_I = 12
    # cycle-to-cycle (per event)
    C2C_FORM = 20
    C2C_SET = 21
    C2C_RESET = 22
    C2C_CAP = 23
    READ = 30
    RELAX_BRIDGE = 40
    LF_NOISE = 60
    """Low-frequency read noise; component j uses stream LF_NOISE + j (j < 32)."""


def _fmix(h: Any) -> Any:
    h = h ^ (h >> _S33)
    h = h * _C1
    h = h ^ (h >> _S33)
    h = h * _C2
    return h ^ (h >> _S33)


def _fmix_inplace(h: Any) -> Any:
    """:func:`_fmix` over an array the caller owns, in place: the same bits with one
    temporary instead of six (the relaxation walk hashes ~10⁶ keys per call)."""
    if not isinstance(h, np.ndarray) or h.ndim == 0:
        return _fmix(h)
    t = np.right_shift(h, _S33)
    np.bitwise_xor(h, t, out=h)
    np.multiply(h, _C1, out=h)
    np.right_shift(h, _S33, out=t)
    np.bitwise_xor(h, t, out=h)
    np.multiply(h, _C2, out=h)
    np.right_shift(h, _S33, out=t)
    np.bitwise_xor(h, t, out=h)
    return h


def cell_hash(seed: int, cell: npt.ArrayLike, stream: int) -> U64:
    """The (seed, cell, stream) stage of :func:`hash_keys`: a caller drawing many events of
    the same cells (the relaxation bridge: one per level) hashes them once."""
    c = np.asarray(cell, dtype=np.uint64)
    with np.errstate(over="ignore"):
        s = _fmix(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * _GOLDEN + np.uint64(stream) * _K_STREAM)
        return _fmix_inplace(c * _K_CELL ^ s)


def event_hash(cell_h: U64, event: npt.ArrayLike) -> U64:
    """The last stage of :func:`hash_keys`, from :func:`cell_hash`: the same bits."""
    e = np.asarray(event, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return _fmix_inplace(cell_h ^ (e * _K_EVENT + _GOLDEN))


def hash_keys(seed: int, cell: npt.ArrayLike, event: npt.ArrayLike, stream: int) -> U64:
    """64 random bits per element for keys (seed, cell, event, stream); broadcasts."""
    return event_hash(cell_hash(seed, cell, stream), event)


def uniform_from_bits(bits: U64) -> F64:
    """A hash as a uniform on the open interval (0, 1) (top 53 bits); reuses ``bits``."""
    if isinstance(bits, np.ndarray) and bits.ndim > 0:
        np.right_shift(bits, _S11, out=bits)
        u = bits.astype(np.float64)
        u += 0.5
        u *= 1.0 / 9007199254740992.0
        return u
    return ((bits >> _S11).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


_M64 = (1 << 64) - 1


def _fmix_int(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _M64
    return h ^ (h >> 33)


def hash_scalar(seed: int, cell: int, event: int, stream: int) -> int:
    """:func:`hash_keys` for one key, in plain Python integers (same value, no numpy)."""
    s = _fmix_int(((seed & _M64) * 0x9E3779B97F4A7C15 + stream * 0xE7037ED1A0B428DB) & _M64)
    h = _fmix_int(((cell * 0xD6E8FEB86659FD93) & _M64) ^ s)
    return _fmix_int(h ^ ((event * 0xA0761D6478BD642F + 0x9E3779B97F4A7C15) & _M64))


def uniform(seed: int, cell: npt.ArrayLike, event: npt.ArrayLike, stream: int) -> F64:
    """Uniform on the open interval (0, 1)."""
    return uniform_from_bits(hash_keys(seed, cell, event, stream))


def normal(seed: int, cell: npt.ArrayLike, event: npt.ArrayLike, stream: int) -> F64:
    """Standard normal (Box–Muller over two keyed uniforms; the second uses stream + 1000)."""
    u1 = uniform(seed, cell, event, stream)
    u2 = uniform(seed, cell, event, stream + 1000)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def generator(seed: int, *words: int) -> np.random.Generator:
    """A numpy Generator keyed by (seed, words) — for bulk draws not tied to a cell."""
    key = [seed & 0xFFFFFFFFFFFFFFFF, *[w & 0xFFFFFFFFFFFFFFFF for w in words]]
    return np.random.Generator(
        np.random.Philox(key=np.array(key[:2], dtype=np.uint64) if len(key) <= 2 else _fold(key))
    )


def _fold(words: list[int]) -> npt.NDArray[np.uint64]:
    h: Any = np.uint64(0)
    out = []
    with np.errstate(over="ignore"):
        for i, w in enumerate(words):
            h = _fmix(np.asarray(h ^ (np.uint64(w) + np.uint64(i) * _GOLDEN), dtype=np.uint64))
            out.append(h)
    return np.array([out[-1], out[len(out) // 2]], dtype=np.uint64)
