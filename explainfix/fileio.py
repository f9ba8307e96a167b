"""Atomic file writes: a file is either its old self or completely written, never half.

Example:
    >>> import json, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "report.json")
    >>> with atomic_write(path, "w") as handle:
    ...     json.dump({"ratio": 0.5}, handle)
    >>> open(path).read()
    '{"ratio": 0.5}'
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

__all__ = ["atomic_write"]


def _umask() -> int:
    """The process umask (read without changing it for longer than a call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, fsync: bool = False) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success it replaces ``path`` in one step.

    The temporary file lives in the same folder (so ``os.replace`` is atomic) and is hidden
    (``.<name>.<random>.tmp``). When the ``with`` block raises, the temporary file is removed and
    a previous ``path`` is left intact. The written file gets the permissions a plain ``open``
    would give (``0o666`` minus the umask).

    Args:
        path: the file to write; its folder must exist.
        mode: ``"wb"`` (default) or ``"w"`` (text, UTF-8).
        fsync: flush the data to disk before the rename (for long jobs' checkpoints).

    Yields:
        The open file object.

    Raises:
        ValueError: a mode other than ``"w"`` / ``"wb"``.
        FileNotFoundError: the folder of ``path`` does not exist.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
