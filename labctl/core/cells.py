"""Addressing arrays of cells.

A :class:`Cells` value names a batch of cells by three aligned integer arrays
(tile, row, column). Every backend operation takes one, with per-cell parameters given as
arrays of the same length (or scalars, broadcast). Build them with :meth:`Cells.block` for
a rectangular slice and :meth:`Cells.from_mask` for a masked slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from labctl.core.errors import AddressError, RequestRejected

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class Cells:
    """A batch of cells: ``tile[k], row[k], col[k]`` name cell *k* of the batch."""

    tile: IntArray
    row: IntArray
    col: IntArray

    def __post_init__(self) -> None:
        arrays = [
            _int_array(a, name)
            for a, name in zip(self.arrays(), ("tile", "row", "col"), strict=True)
        ]
        n = arrays[0].size
        if any(a.size != n for a in arrays):
            raise AddressError(
                f"tile, row and col arrays must have one length; got {[a.size for a in arrays]}"
            )
        for name, a in zip(("tile", "row", "col"), arrays, strict=True):
            a.setflags(write=False)
            object.__setattr__(self, name, a)

    def arrays(self) -> tuple[IntArray, IntArray, IntArray]:
        return self.tile, self.row, self.col

    @property
    def size(self) -> int:
        return int(self.tile.size)

    def __len__(self) -> int:
        return self.size

    @classmethod
    def block(
        cls,
        tile: int,
        rows: slice | range | npt.ArrayLike,
        cols: slice | range | npt.ArrayLike,
        *,
        n_rows: int | None = None,
        n_cols: int | None = None,
    ) -> Cells:
        """All cells of ``rows`` × ``cols`` on ``tile``, row-major.

        Slices with an open end need ``n_rows`` / ``n_cols`` (the tile's size) to resolve.
        """
        r = _as_index(rows, n_rows, "rows")
        c = _as_index(cols, n_cols, "cols")
        rr, cc = np.meshgrid(r, c, indexing="ij")
        return cls(np.full(rr.size, tile, dtype=np.int64), rr.reshape(-1), cc.reshape(-1))

    @classmethod
    def from_mask(cls, tile: int, mask: npt.ArrayLike, *, row0: int = 0, col0: int = 0) -> Cells:
        """The cells where the 2-D boolean ``mask`` is true, offset by (row0, col0)."""
        m = np.asarray(mask, dtype=bool)
        if m.ndim != 2:
            raise AddressError(f"mask must be 2-D (rows × cols), got shape {m.shape}")
        r, c = np.nonzero(m)
        return cls(np.full(r.size, tile, dtype=np.int64), r + row0, c + col0)

    @classmethod
    def concat(cls, parts: list[Cells]) -> Cells:
        if not parts:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
        return cls(
            np.concatenate([p.tile for p in parts]),
            np.concatenate([p.row for p in parts]),
            np.concatenate([p.col for p in parts]),
        )

    def subset(self, index: npt.ArrayLike) -> Cells:
        """The cells selected by a boolean mask or integer index over this batch."""
        idx = np.asarray(index)
        return Cells(self.tile[idx], self.row[idx], self.col[idx])

    def check_bounds(self, n_tiles: int, n_rows: int, n_cols: int) -> None:
        """Raise :class:`AddressError` naming the first cell outside the chip."""
        for name, a, n in (
            ("tile", self.tile, n_tiles),
            ("row", self.row, n_rows),
            ("col", self.col, n_cols),
        ):
            bad = (a < 0) | (a >= n)
            if bad.any():
                k = int(np.argmax(bad))
                raise AddressError(
                    f"cell {k} of the batch has {name} {int(a[k])}, outside 0..{n - 1} "
                    f"({int(bad.sum())} cells out of range); nothing was applied"
                )

    def flat_index(self, n_rows: int, n_cols: int) -> IntArray:
        """Index into a state array of shape (tiles, rows, cols) flattened C-order."""
        return (self.tile * n_rows + self.row) * n_cols + self.col

    def to_dict(self) -> dict[str, Any]:
        return {"tile": self.tile.tolist(), "row": self.row.tolist(), "col": self.col.tolist()}


def _int_array(value: object, name: str) -> IntArray:
    """Cell indices as int64, rejecting (never truncating) non-integer values."""
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise AddressError(f"{name} indices must be an integer array: {e}") from None
    if a.dtype.kind == "b":
        raise AddressError(f"{name} indices must be integers, not booleans (use Cells.from_mask)")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise AddressError(f"{name} indices must be whole numbers (a fractional index is "
                               "refused, never truncated)")
    elif a.dtype.kind not in "iu" and a.size:
        raise AddressError(f"{name} indices must be integers, got dtype {a.dtype}")
    if a.size and a.dtype.kind in "uf" and np.max(np.abs(a)) >= 2**62:
        raise AddressError(f"{name} index too large")
    return np.ascontiguousarray(a, dtype=np.int64).reshape(-1)


def _as_index(sel: slice | range | npt.ArrayLike, n: int | None, what: str) -> IntArray:
    if isinstance(sel, slice):
        if n is None and (sel.stop is None or (sel.start or 0) < 0 or sel.stop < 0):
            raise AddressError(f"{what}: an open or negative slice needs the tile size")
        return np.arange(*sel.indices(n if n is not None else int(sel.stop)), dtype=np.int64)
    if isinstance(sel, range):
        return np.arange(sel.start, sel.stop, sel.step, dtype=np.int64)
    return _int_array(sel, what)  # rejects 1.5, True, strings: never truncated


def broadcast_param(value: npt.ArrayLike, n: int, name: str) -> FloatArray:
    """A per-cell parameter as a float64 array of length ``n`` (scalars broadcast)."""
    try:
        raw = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise RequestRejected(f"{name} must be a number or an array of numbers: {e}") from None
    if raw.dtype.kind not in "iuf":
        raise RequestRejected(f"{name} must hold real numbers, got dtype {raw.dtype}")
    a = raw.astype(np.float64)
    if a.ndim == 0:
        return np.full(n, float(a))
    a = a.reshape(-1)
    if a.size != n:
        raise RequestRejected(f"{name} has {a.size} values for {n} cells; give one or one per cell")
    return a
