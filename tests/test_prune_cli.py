"""``explainfix prune`` end to end on tiny inputs."""
from __future__ import annotations

import json

import torch

from explainfix.checkpoint import load
from explainfix.cli import main


def test_cli_prune_by_name_and_reload(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["prune", "--model", "resnet18", "--ratio", "0.99", "--input-size", "1", "32", "32",
               "--mode", "exact", "--fill", "reset", "--init", "dct2", "--no-progress", "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["params_after"] < report["params_before"]
    assert report["mode"] == "exact" and report["fill"] == "reset" and report["init"] == "dct2"
    assert "ChannelPrune" in (out / "report.txt").read_text()
    model = load(out / "model.pt")
    assert sum(p.numel() for p in model.parameters()) == report["params_after"]
    assert not model.conv1.weight.requires_grad  # --init fixes spatial layers, and they stay fixed
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 5)
    # a checkpoint can be pruned again
    again = tmp_path / "again"
    assert main(["prune", "--model", str(out / "model.pt"), "--ratio", "0.5", "--input-size", "1", "32", "32",
                 "--no-progress", "--out", str(again)]) == 0
    assert json.loads((again / "report.json").read_text())["params_before"] == report["params_after"]


def test_cli_saliency_and_errors(tmp_path, capsys):
    out = tmp_path / "sal"
    rc = main(["prune", "--model", "mobilenet_v3_small", "--ratio", "0.5", "--scores", "saliency", "--batches", "1",
               "--input-size", "1", "32", "32", "--no-progress", "--out", str(out)])
    assert rc == 0
    assert json.loads((out / "report.json").read_text())["scores"] == "saliency"
    assert main(["prune", "--model", "resnet18", "--ratio", "90", "--out", str(tmp_path / "x")]) == 2
    assert main(["prune", "--model", "no_such_net", "--ratio", "0.5", "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "ratio" in err and "no_such_net" in err


def test_cli_bad_out_and_input_size_fail_before_any_work(tmp_path, capsys, monkeypatch):
    import explainfix.prune

    def no_work(*args, **kwargs):
        raise AssertionError("channelprune ran before the arguments were checked")

    monkeypatch.setattr(explainfix.prune, "channelprune", no_work)
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    assert main(["prune", "--model", "unet_d", "--ratio", "0.5", "--out", str(a_file)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "keep me"
    out = tmp_path / "out"
    assert main(["prune", "--model", "unet_d", "--ratio", "0.5", "--input-size", "3", "--out", str(out)]) == 2
    assert "--input-size must be C H W" in capsys.readouterr().err
    assert not out.exists()


def test_cli_corrupt_checkpoint_is_a_clean_error(tmp_path, capsys):
    empty, garbage = tmp_path / "empty.pt", tmp_path / "garbage.pt"
    empty.write_bytes(b"")
    garbage.write_bytes(b"garbage\n")
    for path in (empty, garbage):
        assert main(["prune", "--model", str(path), "--ratio", "0.5", "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert f"{str(path)!r} is not a readable ExplainFix checkpoint" in err
        assert "weights_only` set to `False` will likely succeed" not in err  # no advice to unpickle it
