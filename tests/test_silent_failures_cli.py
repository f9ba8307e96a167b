"""Issue 13, items 7 and 8: CLI options that were silently ignored; output folders; Ctrl-C."""
import pytest

from explainfix.cli import main


def test_prune_data_without_saliency_scores_is_an_error(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["prune", "--model", "resnet18", "--ratio", "0.5", "--data", "synthetic", "--out", str(out)])
    assert code == 2
    assert "--data synthetic is only used with --scores saliency" in capsys.readouterr().err
    assert not out.exists()


def test_out_that_cannot_be_created_fails_before_the_work(tmp_path, capsys, monkeypatch):
    from explainfix.cli import prune

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before --out was checked")

    monkeypatch.setattr(prune, "model_from_args", no_work)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["prune", "--model", "resnet18", "--ratio", "0.5", "--out", str(blocker / "out")]) == 2
    assert "cannot be created" in capsys.readouterr().err


def test_unwritable_out_fails_before_the_work(tmp_path, capsys, monkeypatch):
    import tempfile

    from explainfix.cli import explain, prune

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied")

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before --out was checked")

    monkeypatch.setattr(prune, "model_from_args", no_work)
    monkeypatch.setattr(explain, "model_from_args", no_work, raising=False)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # a read-only folder (the tests may run as root)
    for command in (["prune", "--ratio", "0.5"], ["explain"]):
        assert main([*command, "--model", "resnet18", "--out", str(tmp_path)]) == 2
        assert "is not writable" in capsys.readouterr().err


def test_prune_output_set_is_never_mixed(tmp_path, monkeypatch):
    import json

    from explainfix import checkpoint
    from explainfix.cli import prune

    out = tmp_path / "out"
    args = ["prune", "--model", "resnet18", "--in-chans", "1", "--num-classes", "2", "--input-size", "1", "32", "32",
            "--no-progress", "--out", str(out)]
    assert main([*args, "--ratio", "0.3"]) == 0
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    real_write = prune._write_text
    calls = []

    def interrupted(path, text):
        calls.append(path)
        if len(calls) == 2:  # model.pt and report.json are written, report.txt is not
            raise KeyboardInterrupt
        real_write(path, text)

    monkeypatch.setattr(prune, "_write_text", interrupted)
    assert main([*args, "--ratio", "0.6"]) == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old  # old set intact, no temp files
    monkeypatch.undo()
    assert main([*args, "--ratio", "0.6"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["ratio"] == 0.6
    assert checkpoint.load(out / "model.pt").explainfix_meta["prune_report"] == report
    assert sorted(p.name for p in out.iterdir()) == ["model.pt", "report.json", "report.txt"]


def test_stale_temp_file_of_a_killed_save_is_removed_on_next_run(tmp_path):
    import subprocess
    import sys

    from explainfix.fileio import atomic_write

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".model.pt.{pid}.abc123.tmp"
    stale.write_bytes(b"x" * 1000)
    alive = tmp_path / f".model.pt.{1}.def456.tmp"  # pid 1 runs: another writer, left alone
    alive.write_bytes(b"y")
    with atomic_write(tmp_path / "model.pt") as handle:
        handle.write(b"new")
    assert not stale.exists() and alive.exists()
    assert (tmp_path / "model.pt").read_bytes() == b"new"


def test_ctrl_c_is_a_clean_message_and_exit_130(tmp_path, capsys, monkeypatch):
    from explainfix.cli import prune

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prune, "model_from_args", interrupted)
    assert main(["prune", "--model", "resnet18", "--ratio", "0.5", "--out", str(tmp_path / "o")]) == 130
    err = capsys.readouterr().err
    assert "interrupted (Ctrl-C)" in err and "Traceback" not in err


def test_explain_output_set_is_never_mixed(tmp_path, monkeypatch):
    from explainfix.cli import explain

    out = tmp_path / "out"
    base = ["explain", "--model", "resnet18", "--in-chans", "1", "--no-progress", "--out", str(out)]
    assert main([*base, "--data", "synthetic", "--batches", "1", "--batch-size", "2", "--image-size", "16"]) == 0
    assert (out / "ed_heatmap_saliency.png").is_file()
    (out / "mine.txt").write_text("not ours")
    old = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(explain, "write_pictures", interrupted)  # after spectra.json is written
    assert main(base) == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old  # old set intact, nothing staged left
    monkeypatch.undo()
    assert main(base) == 0  # without --data: the old saliency heatmap must not stay beside the new set
    assert sorted(p.name for p in out.iterdir()) == ["e0.png", "ed_heatmap.png", "mine.txt", "spectra.json"]
