"""Atomic file writes (a file is either its old self or completely written, never half), output
sets written as one (:func:`write_file_set`, :func:`staged_folder`: never new files beside old
ones), writability checks before the work (:func:`check_writable_folder`), and safe reads of
torch files (:func:`load_tensors`). Temporary files carry the writer's process id; those of a
killed writer are removed by the next write of the same file.

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
import signal
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_write", "write_file_set", "staged_folder", "check_writable_folder", "load_tensors"]


def _umask() -> int:
    """The process umask (read without changing it for longer than a call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, fsync: bool = False) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success it replaces ``path`` in one step.

    The temporary file lives in the same folder (so ``os.replace`` is atomic) and is hidden
    (``.<name>.<pid>.<random>.tmp``). When the ``with`` block raises, the temporary file is removed
    and a previous ``path`` is left intact; temporary files of a killed writer (its process gone)
    are removed by the next write of the same file. The written file gets the permissions a plain
    ``open`` would give (``0o666`` minus the umask).

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
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder of {str(path)!r} does not exist")
    remove_stale_temp_files(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    return True


def remove_stale_temp_files(path: str | os.PathLike) -> list[str]:
    """Remove the temporary files a killed :func:`atomic_write` of ``path`` left behind.

    Temporary files are named ``.<name>.<pid>.<random>.tmp``; one whose process no longer
    runs (on this machine) is stale. Files of running processes are left alone. Returns the
    removed paths.
    """
    path = Path(path)
    removed = []
    try:
        entries = list(path.parent.glob(f".{path.name}.*.tmp"))
    except OSError:
        return removed
    for entry in entries:
        middle = entry.name[len(path.name) + 2:-len(".tmp")]
        pid, _, rest = middle.partition(".")
        if not (pid.isdigit() and rest) or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            entry.unlink()
            removed.append(str(entry))
    return removed


def check_writable_folder(path: str | os.PathLike, *, what: str = "--out") -> Path:
    """``path`` as a Path, checked (by a real test write) to be a folder that can be created or written.

    Nothing is created: when ``path`` does not exist, its nearest existing ancestor must be a
    writable folder.

    Raises:
        ValueError: ``path`` (or an ancestor) exists and is not a folder, or cannot be written.
    """
    out = Path(path)
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        name = "exists and is not a folder" if probe == out else f"cannot be created: {str(probe)!r} is a file"
        raise ValueError(f"{what} {str(out)!r} {name}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".explainfix-write-test.", suffix=".tmp", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        where = "" if probe == out else f" (its folder {str(probe)!r} cannot be written)"
        raise ValueError(f"{what} {str(out)!r} is not writable{where}: {err.strerror or err}") from None
    return out


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block ends; a no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *a: caught.append(a))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(*caught[0])


@contextlib.contextmanager
def write_file_set(folder: str | os.PathLike, names: list[str]) -> Iterator[dict[str, Path]]:
    """Write several files of ``folder`` as one set: a reader never sees new files beside old ones.

    Yields ``{name: temporary path}`` (hidden files in ``folder``, which is created); write each
    one completely. When the block succeeds, with Ctrl-C held off, the old files of the set are
    removed first and the new ones renamed into place: at any moment a reader sees the old set,
    the new set, or a part of one of them - never a mix. When the block raises (or is
    interrupted) the temporary files are removed and the old set is left intact.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    staged = {}
    for name in names:
        remove_stale_temp_files(folder / name)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.{pid}.", suffix=".tmp", dir=folder)
        os.close(fd)
        staged[name] = Path(tmp)
    try:
        yield dict(staged)
        with _sigint_deferred():
            for name, tmp in staged.items():
                os.chmod(tmp, 0o666 & ~_umask())
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(folder / name)
            for name in names:
                os.replace(staged[name], folder / name)
    except BaseException:
        for tmp in staged.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike, replaces: Any = ()) -> Iterator[Path]:
    """A hidden, empty folder inside ``out`` to write a whole output set into; committed as one set.

    When the block succeeds, with Ctrl-C held off, the files of ``out`` named by ``replaces``
    (names, or a callable ``name -> bool``: the files of an earlier set) and those the new set
    overwrites are removed first, then every file written into the staged folder is renamed into
    ``out``: a reader sees the old set, the new one, or part of one, never a mix. When the block
    raises (or is interrupted) the staged folder is removed and ``out`` is left as it was.
    Staged folders of killed runs (their process gone) are removed on the next run.
    """
    import shutil

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for entry in out.glob(".explainfix-staging.*"):
        pid = entry.name.split(".")[2] if entry.name.count(".") >= 3 else ""
        if entry.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".explainfix-staging.{os.getpid()}.", dir=out))
    try:
        yield staging
        new = sorted(p.name for p in staging.iterdir())
        old_set = replaces if callable(replaces) else set(replaces).__contains__
        with _sigint_deferred():
            for entry in list(out.iterdir()):
                if entry.is_file() and (entry.name in new or old_set(entry.name)):
                    with contextlib.suppress(FileNotFoundError):
                        entry.unlink()
            for name in new:
                os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
