"""Opening possibly damaged HDF5 files for reading without hanging.

A run file is opened in SWMR-read mode (the only way to open the file of a writer that was
killed: its superblock still says "open for writing"). In that mode HDF5 re-reads any
metadata block whose checksum fails, assuming a concurrent writer is half-way through it,
with a growing sleep between attempts: 100 attempts by default. On a truncated or corrupted
file every such read fails for good, and a reader slept for minutes per block (a truncated
quickstart file: ``labctl show`` did not return within an hour). HDF5 lets the number of
attempts be set on the file-access property list (``H5Pset_metadata_read_attempts``,
https://docs.hdfgroup.org/hdf5/develop/group___f_a_p_l.html), which h5py does not wrap; we
call it through ``ctypes`` on the HDF5 library h5py itself loaded. Ten attempts still ride
out a live writer's in-flight metadata and fail a damaged block in milliseconds.
"""

from __future__ import annotations

import ctypes
import os
from functools import cache
from pathlib import Path

import h5py
from h5py import h5f, h5p

READ_ATTEMPTS = 10


@cache
def _hdf5_library() -> ctypes.CDLL | None:
    """The HDF5 shared library h5py uses (found in this process's memory map), or None."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if "libhdf5" in line}
    except OSError:
        return None
    for p in sorted(paths):
        name = os.path.basename(p)
        if name.startswith("libhdf5") and not name.startswith("libhdf5_hl"):
            try:
                lib = ctypes.CDLL(p)
                lib.H5Pset_metadata_read_attempts.argtypes = [ctypes.c_int64, ctypes.c_uint]
                lib.H5Iis_valid.argtypes = [ctypes.c_int64]
                return lib
            except (OSError, AttributeError):
                continue
    return None


def _fapl(attempts: int) -> h5p.PropFAID:
    fapl = h5p.create(h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5f.LIBVER_LATEST, h5f.LIBVER_LATEST)
    lib = _hdf5_library()
    # H5Iis_valid guards against a second copy of the library that does not know this id.
    if lib is not None and lib.H5Iis_valid(fapl.id) > 0:
        lib.H5Pset_metadata_read_attempts(fapl.id, attempts)
    return fapl


def bounded_attempts_available() -> bool:
    """Whether :func:`open_for_reading` can bound the attempts in this process."""
    lib = _hdf5_library()
    fapl = h5p.create(h5p.FILE_ACCESS)  # held: the id is closed when the object goes
    return lib is not None and lib.H5Iis_valid(fapl.id) > 0


def open_for_reading(path: Path) -> h5py.File:
    """``h5py.File(path, "r", swmr=True)`` with bounded metadata read attempts (where the
    library can be found: Linux; elsewhere HDF5's default of 100 applies)."""
    fid = h5f.open(os.fsencode(path), h5f.ACC_RDONLY | h5f.ACC_SWMR_READ,
                   fapl=_fapl(READ_ATTEMPTS))
    return h5py.File(fid)


def superblock_eof(path: Path) -> int | None:
    """The end-of-file address an HDF5 superblock (version 2 or 3) records, or None.

    A file shorter than this was truncated (copied partly, or cut by a full disk)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return None
    if head[:8] != b"\x89HDF\r\n\x1a\n" or len(head) < 48 or head[8] not in (2, 3):
        return None
    size = head[9]
    if size not in (4, 8):
        return None
    at = 12 + 2 * size
    base = int.from_bytes(head[12:12 + size], "little")
    return base + int.from_bytes(head[at:at + size], "little")
