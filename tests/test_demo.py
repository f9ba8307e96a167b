import json

import pytest

from explainfix import load
from explainfix.cli import main


def test_demo_runs_whole_pipeline(tmp_path):
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--data", "synthetic", "--model", "resnet18", "--ratio", "0.95",
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
    assert main(["demo", "--out", str(out), "--data", "synthetic", "--model", "resnet18", "--no-progress", *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # not even the filter pictures of step 1


def test_quick_nuclei_demo_trains_every_arm_and_writes_the_report(tmp_path, capsys):
    from explainfix.data.nuclei_demo import find_demo_wheel

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    assert "report.md" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    arms = {r["arm"]: r for r in report["arms"]}
    assert {"learned", "ghaar", "psine", "dct2", "guided_steer"} <= set(arms)
    pruned = next(r for a, r in arms.items() if "ChannelPrune" in a)
    assert pruned["params"] < pruned["params_before_pruning"] == arms["ghaar"]["params"]
    assert arms["learned"]["spatial_params_fixed"] == 0 < arms["ghaar"]["spatial_params_fixed"] == 12744
    for r in arms.values():
        assert 0.0 <= r["held_out_dice_last"] <= 1.0 and r["seconds_per_iteration"] > 0
        # the table's numbers are the runs' own
        result = json.loads((out / r["folder"] / "result.json").read_text())
        assert result["test"]["last"]["dice"] == r["held_out_dice_last"]
    assert 0.0 < report["otsu_dice"] < 1.0
    markdown = (out / "report.md").read_text()
    assert "Otsu" in markdown and "ChannelPrune" in markdown
    for picture in ("learning_curves.png", "overlay.png", "e0_learned_vs_ghaar.png"):
        assert (out / picture).stat().st_size > 0, picture
    if find_demo_wheel() is not None:
        assert not report["data"]["warnings"] and "DSB 2018" in report["data"]["description"]


def test_nuclei_demo_bad_model_fails_before_work(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--model", "resnet18"]) == 2
    assert "--data synthetic" in capsys.readouterr().err and not out.exists()
