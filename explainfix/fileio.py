"""Atomic file writes (a file is either its old self or completely written, never half), and
safe reads of torch files (:func:`load_tensors`).

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
import pickle
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_write", "load_tensors"]


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


def load_tensors(path: str | os.PathLike, *, map_location: Any = "cpu", what: str = "torch file") -> Any:
    """``torch.load(path, weights_only=True)``: no pickled code runs; unreadable files are a ValueError.

    Args:
        path: an existing file written by ``torch.save``.
        map_location: as for ``torch.load``.
        what: what the file should be, named in the error (e.g. ``"ExplainFix checkpoint"``).

    Returns:
        What the file holds (tensors, containers of tensors and plain Python values).

    Raises:
        ValueError: an empty, truncated or corrupt file, or one that needs pickled code to load
            (e.g. a whole ``nn.Module`` saved with ``torch.save``); the message names the file and
            the reason, without torch's advice to load it unsafely.
    """
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        lines = [line for line in lines if not line.startswith("Check the documentation")]  # torch's advice
        reason = lines[-1] if lines else type(err).__name__
        raise ValueError(
            f"{os.fspath(path)!r} is not a readable {what} (empty, truncated, corrupt, or holding pickled "
            f"code rather than tensors: {reason})"
        ) from err
