"""Checking that an output location is writable before the first operation.

A run that forms 1,024 cells and then finds it cannot save the chip's calibration record,
or a plot command that draws for a minute and then cannot write, has wasted the chip's time
(forming is irreversible) or the user's. Every command that writes checks its output
locations first, and an unwritable one is a :class:`~labctl.core.errors.ConfigError` naming the
option and the reason — before any hardware action, with no traceback.

The check is real: a probe file is created and removed in the directory (or, for a directory
that does not exist yet, in its nearest existing ancestor, which must allow creating it).
Permission bits alone would not do: root passes ``os.access`` on a read-only file system.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from labctl.core.errors import ConfigError


def check_writable_dir(path: str | Path, option: str) -> Path:
    """``path`` is, or can be created as, a directory this process can write in. Creates
    nothing that stays."""
    p = Path(path)
    probe_in = p
    while not probe_in.exists():
        parent = probe_in.parent
        if parent == probe_in:
            break
        probe_in = parent
    if probe_in.exists() and not probe_in.is_dir():
        raise ConfigError("command line", option, f"{p}: {probe_in} is a file, not a "
                          "directory; choose another location")
    try:
        fd, name = tempfile.mkstemp(prefix=".labctl-write-probe-", dir=probe_in)
    except OSError as e:
        what = f"write in {p}" if probe_in == p else f"create {p} (in {probe_in})"
        raise ConfigError("command line", option, f"cannot {what}: {e.strerror or e}; "
                          "choose a writable location") from None
    os.close(fd)
    os.unlink(name)
    return p


def check_new_file(path: str | Path, option: str) -> Path:
    """``path`` does not exist yet and can be created (its directory is writable)."""
    p = Path(path)
    if p.exists() or p.is_symlink():
        raise ConfigError("command line", option, f"{p} exists; choose another name")
    check_writable_dir(p.parent if str(p.parent) else Path("."), option)
    return p


def output_file(given: str | Path, default_name: str, option: str) -> Path:
    """Where a command writes the file named by ``option``: ``given`` itself, or
    ``default_name`` inside it when ``given`` is a directory (or ends with a path
    separator, for one to be created). Checked writable before anything runs."""
    text = str(given)
    p = Path(text)
    if p.is_dir() or text.endswith(("/", os.sep)):
        p = p / default_name
    check_writable_dir(p.parent if str(p.parent) else Path("."), option)
    if p.is_dir():
        raise ConfigError("command line", option, f"{p} is a directory; give a file name")
    return p
