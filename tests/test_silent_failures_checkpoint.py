"""Issue 13, items 5 and 8: checkpoints never unpickle or download unless trusted; clear errors."""
import io
import os
import pickle

import pytest
import torch
from torch import nn

from explainfix import checkpoint, create_model
from explainfix.checkpoint import load, model_from_payload, model_payload, save
from explainfix.cli import main
from explainfix.models.resolve import resolve_model

ARCH = {"name": "resnet18", "kwargs": {"in_chans": 1, "num_classes": 2}}


def resnet():
    torch.manual_seed(0)
    return create_model("resnet18", in_chans=1, num_classes=2).eval()


def no_unpickling(monkeypatch):
    real = torch.load

    def guarded(*args, **kwargs):
        assert kwargs.get("weights_only", False), "pickled code was unpickled"
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", guarded)


def write(payload, path):
    torch.save(payload, path)
    return path


def old_style(model, arch):
    """A payload as version 1 wrote it before: arch, state_dict and the pickled module."""
    payload = model_payload(model, arch=None)
    payload["arch"] = arch
    return payload


def test_rebuildable_model_stores_no_pickled_module(tmp_path):
    model = resnet()
    path = save(model, tmp_path / "m.pt", arch=ARCH)
    payload = torch.load(path, weights_only=True)
    assert "module" not in payload
    state_only = io.BytesIO()
    torch.save(model.state_dict(), state_only)
    assert os.path.getsize(path) < 1.1 * len(state_only.getvalue())  # was ~2x
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(load(path)(x), model(x))


def test_unrebuildable_model_stores_module_and_needs_trust(tmp_path, monkeypatch):
    model = resnet()
    model.relu = nn.SiLU()  # invisible to a state_dict: the rebuild would not reproduce it
    path = save(model, tmp_path / "m.pt", arch=ARCH)
    assert "module" in torch.load(path, weights_only=True)
    before = path.read_bytes() if hasattr(path, "read_bytes") else open(path, "rb").read()
    no_unpickling(monkeypatch)
    with pytest.raises(ValueError, match=r"modules of create_model\('resnet18'.*runs code.*trust=True.*--trust-checkpoint"):
        load(path)
    monkeypatch.undo()
    assert open(path, "rb").read() == before
    assert isinstance(load(path, trust=True).relu, nn.SiLU)


@pytest.mark.parametrize("arch, reason", [
    (None, "stores no architecture"),
    ({"name": "no_such_net", "kwargs": {}}, "'no_such_net' is not a registered model"),
    ({"name": "resnet34", "kwargs": ARCH["kwargs"]}, "modules of create_model\\(.resnet34."),
    ("resnet18", "is not {'name': str"),
])
def test_missing_unknown_or_bad_arch_never_unpickles(tmp_path, monkeypatch, arch, reason):
    path = write(old_style(resnet(), arch), tmp_path / "m.pt")
    no_unpickling(monkeypatch)
    with pytest.raises(ValueError, match=reason or "rebuilding arch 'resnet18' failed"):
        load(path)


def test_tampered_state_dict_never_unpickles(tmp_path, monkeypatch):
    payload = old_style(resnet(), ARCH)
    payload["state_dict"]["fc.weight"] = torch.zeros(7, 3)  # does not fit fc's input
    path = write(payload, tmp_path / "m.pt")
    no_unpickling(monkeypatch)
    with pytest.raises(ValueError, match="cannot be rebuilt safely.*trust=True"):
        load(path)


def test_pretrained_in_file_never_downloads(tmp_path, monkeypatch):
    from explainfix.models import torchvision_models

    def no_download(name):
        raise AssertionError(f"file contents started a download of {name}")

    monkeypatch.setattr(torchvision_models, "_download_state_dict", no_download)
    model = resnet()
    arch = {"name": "resnet18", "kwargs": {**ARCH["kwargs"], "pretrained": "torchvision"}}
    path = save(model, tmp_path / "saved.pt", arch=arch)
    assert torch.load(path, weights_only=True)["arch"] == ARCH  # stripped at save time
    payload = model_payload(model, arch=ARCH)
    payload["arch"] = arch  # a file written elsewhere, asking for a download
    path = write(payload, tmp_path / "edited.pt")
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(load(path)(x), model(x))


def test_missing_keys_are_named(tmp_path):
    payload = model_payload(resnet(), arch=ARCH)
    del payload["state_dict"]
    with pytest.raises(ValueError, match=r"lacks the keys \['state_dict'\]"):
        model_from_payload(payload, source="x.pt")
    with pytest.raises(ValueError, match="stores no architecture.*stores no pickled module"):
        model_from_payload({"format": checkpoint.FORMAT, "version": 1}, source="x.pt")
    with pytest.raises(ValueError, match="invalid checkpoint version"):
        model_from_payload({"format": checkpoint.FORMAT, "version": "one"}, source="x.pt")


def test_trusted_payload_round_trip_keeps_signature():
    model = nn.Sequential(nn.Conv2d(1, 2, 3))
    payload = model_payload(model, meta={"epoch": 3}, arch=None)
    loaded = model_from_payload(pickle.loads(pickle.dumps(payload)), map_location="cpu", source="run", trust=True)
    assert torch.equal(loaded[0].weight, model[0].weight) and loaded.explainfix_meta == {"epoch": 3}


def test_resolve_model_checkpoint_arch_trust_and_refused_shape_options(tmp_path, capsys):
    model = resnet()
    path = save(model, tmp_path / "m.pt", arch=ARCH)
    loaded, arch = resolve_model(str(path))
    assert arch == ARCH
    with pytest.raises(ValueError, match=r"num_classes=3 only applies to a model built by name"):
        resolve_model(str(path), num_classes=3)
    out = tmp_path / "out"
    assert main(["explain", "--model", str(path), "--in-chans", "3", "--out", str(out)]) == 2
    assert "in_chans=3 only applies" in capsys.readouterr().err and not out.exists()
    custom = save(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()), tmp_path / "custom.pt")
    with pytest.raises(ValueError, match="--trust-checkpoint"):
        resolve_model(str(custom))
    assert resolve_model(str(custom), trust=True)[1] is None


def test_trust_checkpoint_is_documented():
    from explainfix.cli import build_parser

    parser = build_parser()
    for command in ("explain", "prune"):
        sub = parser._subparsers._group_actions[0].choices[command]
        assert "RUNS CODE FROM THE FILE" in sub.format_help().replace("\n", " ").replace("  ", " ")
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    assert "--trust-checkpoint" in readme
