"""save / load of pruned models: a fresh process gets identical outputs."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torchvision
from torch import nn

import explainfix
from explainfix import checkpoint
from explainfix.checkpoint import load, save
from explainfix.prune import channelprune, weight_scores
from explainfix.spatial import fix_spatial


def pruned_resnet18() -> nn.Module:
    model = torchvision.models.resnet18(num_classes=3).eval()
    fix_spatial(model)
    channelprune(model, 0.99, scores=weight_scores(model), example_inputs=torch.randn(1, 3, 32, 32),
                 progress=False, seed=0)
    return model


def test_fresh_process_identical_outputs(tmp_path):
    model = pruned_resnet18()
    x = torch.randn(2, 3, 32, 32)
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(model(x), tmp_path / "y.pt")
    save(model, tmp_path / "model.pt", meta={"note": "pruned"})
    code = textwrap.dedent(
        f"""
        import torch
        from explainfix.checkpoint import load
        m = load({str(tmp_path / 'model.pt')!r}, trust=True)
        x = torch.load({str(tmp_path / 'x.pt')!r})
        y = torch.load({str(tmp_path / 'y.pt')!r})
        with torch.no_grad():
            out = m(x)
        assert torch.equal(out, y), (out - y).abs().max()
        assert m.explainfix_meta == {{"note": "pruned"}}
        assert not m.conv1.weight.requires_grad and not m.training
        print("OK", sum(p.numel() for p in m.parameters()))
        """
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["OK", str(sum(p.numel() for p in model.parameters()))]


def test_arch_rebuild_without_unpickling(tmp_path, monkeypatch):
    from explainfix import models

    model = models.create_model("resnet18", in_chans=1, num_classes=2).eval()
    fix_spatial(model)
    channelprune(model, 0.99, scores=weight_scores(model), example_inputs=torch.randn(1, 1, 32, 32),
                 progress=False, seed=0)
    assert model.layer1[0].conv1.out_channels < 64 or model.layer4[1].conv1.out_channels < 512
    path = save(model, tmp_path / "m.pt", arch={"name": "resnet18", "kwargs": {"in_chans": 1, "num_classes": 2}})

    real_load = torch.load

    def guarded(*args, **kwargs):  # the rebuild path must never unpickle code
        assert kwargs.get("weights_only", False), "unpickled code although arch was given"
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", guarded)
    loaded = load(path)
    monkeypatch.setattr(torch, "load", real_load)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert [p.requires_grad for p in loaded.parameters()] == [p.requires_grad for p in model.parameters()]
    assert repr(loaded) == repr(model)


def test_arch_mismatch_falls_back_to_module(tmp_path):
    from explainfix import models

    model = models.create_model("resnet18", in_chans=1, num_classes=2).eval()
    model.relu = nn.SiLU()  # parameter-free change a state_dict cannot show
    path = save(model, tmp_path / "m.pt", arch={"name": "resnet18", "kwargs": {"in_chans": 1, "num_classes": 2}})
    loaded = load(path, trust=True)
    assert isinstance(loaded.relu, nn.SiLU)


def test_failing_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    save(nn.Conv2d(1, 2, 3), path)
    before = path.read_bytes()

    real_save = torch.save

    def broken(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("format") == checkpoint.FORMAT:
            f.write(b"partial")
            raise OSError("disk full")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        save(nn.Conv2d(1, 4, 3), path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]  # no temporary file left


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(2)}, other)
    with pytest.raises(ValueError, match="not an ExplainFix checkpoint"):
        load(other)
    with pytest.raises(FileNotFoundError):
        save(nn.Conv2d(1, 1, 3), tmp_path / "no" / "dir.pt")
    assert explainfix.save is save and explainfix.load is load


@pytest.mark.parametrize("content", [b"", b"garbage\n", b"PK\x03\x04truncated zip"])
def test_empty_or_corrupt_file_is_a_value_error(tmp_path, content):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="is not a readable ExplainFix checkpoint"):
        load(path)


def test_unimportable_class_is_a_runtime_error_naming_it(tmp_path):
    script = textwrap.dedent(f"""
        import torch
        from explainfix.checkpoint import save

        class OnlyInThisScript(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(1, 2, 3)

        save(OnlyInThisScript(), {str(tmp_path / "custom.pt")!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    with pytest.raises(RuntimeError, match="OnlyInThisScript"):
        load(tmp_path / "custom.pt", trust=True)
