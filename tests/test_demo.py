import json

import pytest

from explainfix import load
from explainfix.cli import main


def test_demo_runs_whole_pipeline(tmp_path):
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--model", "resnet18", "--ratio", "0.95",
                 "--batches", "2", "--batch-size", "2", "--image-size", "32", "--no-progress"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["init"] == "ghaar" and summary["reloaded_outputs_identical"] is True
    prune = summary["prune"]
    assert prune["kernels_zeroed"] / prune["kernels_total"] > 0.94
    assert prune["params_after"] < prune["params_before"]
    for name in summary["files"]:
        assert (out / name).stat().st_size > 0, name
    assert any(name.endswith("ed_heatmap_saliency.png") for name in summary["files"])
    assert "ChannelPrune" in (out / "SUMMARY.md").read_text()
    model = load(out / "model_pruned.pt")
    assert sum(p.numel() for p in model.parameters()) == prune["params_after"]


def test_demo_rejects_bad_ratio(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--ratio", "1.5"]) == 2
    assert "--ratio must lie in [0, 1)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "bogus"], "unknown --data source 'bogus'"),
        (["--batches", "0"], "must be positive"),
        (["--init", "nosuch"], "unknown init method 'nosuch'"),
        (["--model", "nosuch"], "unknown model 'nosuch'"),
    ],
)
def test_demo_bad_arguments_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--model", "resnet18", "--no-progress", *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # not even the filter pictures of step 1
