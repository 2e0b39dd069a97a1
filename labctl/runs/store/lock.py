"""Exclusive run files: one OS-level lock per run file, held for the whole run or resume.

Two processes appending to one run file would interleave records and, on a real chip,
apply pulses the file does not hold. So every writer first takes an exclusive
``fcntl.flock`` on a lock file beside the run file (``.RUN.h5.lock``) and keeps it until the
file is closed for good. The kernel drops the lock when its process dies — by ``kill -9``
too — so a lock whose holder is dead is simply free; the holder's pid, host and start time
written into the lock file only serve to name the holder in the refusal message and to say
whose stale lock a new writer takes over.

Why a separate lock file: the run file itself is atomically replaced by resume and by the
final compaction (``os.replace``), so a lock on its inode would not survive. Why ``flock``
and not POSIX record locks (``lockf``): a record lock is dropped when the process closes
*any* descriptor of the file, which h5py does behind our back (see the Linux man page
flock(2) and fcntl(2), "Advisory record locking"). On NFS, Linux emulates ``flock`` with
byte-range locks, which the server arbitrates across hosts.

Temporary files (``.RUN.h5.<pid>.tmp``) are only ever created by the lock holder, so the
holder may delete any left behind: their creator died holding the lock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.core.errors import ConfigError, RequestRejected


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a run file's lock."""

    pid: int
    host: str
    started_utc: str
    command: str

    def describe(self) -> str:
        return (f"pid {self.pid} on host {self.host}, started {self.started_utc}"
                f" ({self.command})")


class RunFileBusy(RequestRejected):
    """Another live process writes or resumes this run file; nothing was done."""

    def __init__(self, run_path: Path, holder: Holder | None) -> None:
        self.run_path = run_path
        self.holder = holder
        who = holder.describe() if holder else "another process (it has not said who yet)"
        super().__init__(
            f"{run_path} is in use by {who}; a run file has one writer at a time. Wait for "
            f"that process to finish (or stop it), then retry; nothing was applied to the chip.")


def run_file_path(path: str | Path) -> Path:
    """The run file ``path`` names, with a symbolic link followed to its target.

    The lock file sits beside the run file and is named after it, so every name of one file
    must lead to the same lock: two writers through a link and through its target would
    otherwise both get one. Following the link also makes resume replace the target, not the
    link. (Hard links are refused by :meth:`RunFileLock.acquire` instead.)"""
    p = Path(path)
    return Path(os.path.realpath(p)) if p.is_symlink() else p


def lock_path(run_path: Path) -> Path:
    return run_path.with_name(f".{run_path.name}.lock")


def temp_files(run_path: Path) -> list[Path]:
    """Temporary files of ``run_path`` (only lock holders create them)."""
    return sorted(run_path.parent.glob(f".{run_path.name}.*.tmp"))


class RunFileLock:
    """An exclusive lock on one run file; see the module docstring."""

    def __init__(self, run_path: Path, fd: int, stale: Holder | None) -> None:
        self.run_path = run_path
        self.path = lock_path(run_path)
        self._fd: int | None = fd
        self.stale = stale
        """The holder recorded in a lock file whose process had died (taken over), if any."""

    @classmethod
    def acquire(cls, run_path: str | Path) -> RunFileLock:
        """Take the lock or raise :class:`RunFileBusy` naming the live holder (no waiting)."""
        run = run_file_path(run_path)
        path = lock_path(run)
        while True:
            try:
                run.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise ConfigError(str(run), "(file)", f"cannot lock it for writing ({e.strerror}:"
                                  f" {e.filename}); choose a writable place") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunFileBusy(run, holder) from None
            # A holder that released unlinks the lock file while still holding it; if we
            # locked such an unlinked inode, the path now names another file: try again.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        _refuse_hard_links(run, fd)
        stale = _read_holder(fd)
        me = Holder(os.getpid(), socket.gethostname(),
                    dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:200])
        data = json.dumps(me.__dict__).encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        return cls(run, fd, stale)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def remove_dead_temp_files(self) -> list[Path]:
        """Delete temporary files of this run file: their creators died holding the lock."""
        if self._fd is None:
            raise RuntimeError("the lock is not held")
        gone = []
        for tmp in temp_files(self.run_path):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                gone.append(tmp)
        return gone

    def release(self) -> None:
        """Unlink the lock file, then drop the lock (in that order, see :meth:`acquire`)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunFileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _refuse_hard_links(run: Path, fd: int) -> None:
    """A run file with a second hard link could be written through the other name under
    another lock; refuse it (and let the lock go, removing its file as a release does)
    before anything is read or applied. So is a path that cannot be examined (a symlink
    loop)."""
    try:
        n_names = os.stat(run).st_nlink
    except FileNotFoundError:
        return
    except OSError as e:
        problem = f"cannot be examined ({e.strerror}); give the run file's own path"
    else:
        if n_names <= 1:
            return
        problem = (f"has {n_names} names (hard links), so one lock cannot cover it and a "
                   f"second writer could use the other name; copy it to a new name (cp {run} "
                   "NEW.h5) and use the copy")
    with contextlib.suppress(OSError):
        os.unlink(lock_path(run))
    os.close(fd)
    raise ConfigError(str(run), "(file)", problem)


def try_lock(run_path: str | Path) -> RunFileLock | None:
    """The lock if it is free right now, else ``None`` (for readers tidying up: a file the
    lock refuses — busy, hard-linked — is simply not tidied)."""
    try:
        return RunFileLock.acquire(run_path)
    except RequestRejected:
        return None


def _read_holder(fd: int) -> Holder | None:
    try:
        raw: Any = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return Holder(int(raw["pid"]), str(raw["host"]), str(raw["started_utc"]),
                      str(raw.get("command", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def tidy(run_path: str | Path) -> list[Path]:
    """Delete temporary files a killed writer of ``run_path`` left (e.g. ``kill -9`` during
    the final rewrite), if there are any and no live process holds the lock. Cheap when
    there are none (one directory listing, no lock taken)."""
    run = Path(run_path)
    if not temp_files(run):
        return []
    lock = try_lock(run)
    if lock is None:
        return []
    try:
        return lock.remove_dead_temp_files()
    finally:
        lock.release()
