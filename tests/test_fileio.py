"""``explainfix.fileio.atomic_write``: all or nothing, and no temporary files left behind."""
import os
import stat

import pytest

from explainfix.fileio import atomic_write


def test_writes_bytes_and_text_with_plain_permissions(tmp_path):
    path = tmp_path / "a.bin"
    with atomic_write(path) as handle:
        handle.write(b"\x00\x01")
        assert not path.exists()  # nothing at the target until the block succeeds
    assert path.read_bytes() == b"\x00\x01"
    with atomic_write(str(tmp_path / "b.txt"), "w", fsync=True) as handle:
        handle.write("héllo\n")
    assert (tmp_path / "b.txt").read_bytes() == "héllo\n".encode("utf-8")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt"]


def test_failure_leaves_the_previous_file_intact_and_no_temp_file(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_write(path, "w") as handle:
            handle.write("new, half written")
            raise RuntimeError("disk on fire")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(tmp_path / "fresh.bin") as handle:
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_replaces_an_existing_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"old")
    with atomic_write(path) as handle:
        handle.write(b"new")
    assert path.read_bytes() == b"new" and len(list(tmp_path.iterdir())) == 1


def test_bad_mode_and_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb', got 'a'"):
        with atomic_write(tmp_path / "x", "a"):
            pass
    with pytest.raises(FileNotFoundError):
        with atomic_write(tmp_path / "missing" / "x"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_writers_of_the_package_leave_the_old_file_when_they_fail(tmp_path):
    """save_figure, checkpoint.save and the filter pictures all go through atomic_write."""
    import torch
    from matplotlib.figure import Figure

    from explainfix.checkpoint import save
    from explainfix.explain.plot import save_figure

    class Unpicklable(torch.nn.Module):
        def __reduce_ex__(self, protocol):
            raise RuntimeError("cannot pickle")

    model_file = tmp_path / "model.pt"
    model_file.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="cannot pickle"):
        save(Unpicklable(), model_file)
    assert model_file.read_bytes() == b"previous"

    class Broken(Figure):
        def savefig(self, *args, **kwargs):
            raise OSError("no space left")

    (tmp_path / "fig.png").write_bytes(b"previous")
    with pytest.raises(OSError, match="no space left"):
        save_figure(Broken(), tmp_path / "fig", ["png"])
    assert (tmp_path / "fig.png").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png", "model.pt"]
    assert save_figure(Figure(), tmp_path / "fig", ["png"])[0].read_bytes()[:4] == b"\x89PNG"


def test_load_tensors_reads_tensors_and_names_unreadable_files(tmp_path):
    import torch
    from torch import nn

    from explainfix.fileio import load_tensors

    good = tmp_path / "good.pt"
    torch.save({"w": torch.arange(3.0)}, good)
    assert torch.equal(load_tensors(good)["w"], torch.arange(3.0))
    whole_module = tmp_path / "module.pt"
    torch.save(nn.Conv2d(1, 1, 1), whole_module)  # needs pickled code: refused, not run
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path in (whole_module, truncated, empty):
        with pytest.raises(ValueError, match=f"'{path}' is not a readable weights file") as info:
            load_tensors(path, what="weights file")
        assert "will likely succeed" not in str(info.value)  # no advice to unpickle it
