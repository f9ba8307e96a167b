"""The training platform: runs of every arm, fixed weights, kill-and-resume, DDP, bad input."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import explainfix as ef
from explainfix.cli import main
from explainfix.data.training import training_data
from explainfix.train import ConfigError, RunError, build_arm, load_config, train
from explainfix.train.data import ShardedBatches, epoch_keys
from explainfix.train.state import tensor_digest

SMOKE = {"epochs": 2, "max_steps_per_epoch": 3, "explain": {"enabled": False}}
TIMING = {"spe_s", "spe_compute_s", "images_per_s"}


def _rows(path: Path) -> list[dict]:
    with open(path / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _env() -> dict:
    env = dict(os.environ)
    env.pop("WORLD_SIZE", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.mark.parametrize("arm", [{"init": "learned"}, {"init": "ghaar"}, {"init": "psine"}])
def test_learned_and_fixed_arms_run_and_report(tmp_path, arm):
    result = train({**SMOKE, "arm": arm}, tmp_path, progress=False)
    assert result["status"] == "finished" and result["epochs"] == 2
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk["monitor"] == result["monitor"]
    rows = _rows(tmp_path)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for r in rows:
        assert 0.0 <= float(r["val_auc"]) <= 1.0 and float(r["spe_s"]) > 0 and float(r["train_loss"]) > 0
    assert set(result["test"]) == {"best", "last"}
    assert result["fixed_check"]["ok"]
    if arm["init"] == "learned":
        assert result["params"]["spatial_fixed"] == 0 and result["fixed_check"]["fixed_tensors"] == 0
    else:
        assert result["params"]["spatial_fixed"] == result["params"]["spatial"] > 0
    for name in ("best.pt", "last.pt", "checkpoint.pt", "config.yaml", "metrics.jsonl"):
        assert (tmp_path / name).is_file()
    assert list((tmp_path / "tb").iterdir()), "TensorBoard events"


def test_fixed_weights_bit_identical_after_training_and_others_learned(tmp_path):
    config = load_config({**SMOKE, "arm": {"init": "ghaar"}})
    data = training_data(config.data.source, seed=config.seed)
    torch.manual_seed(config.seed)
    start = build_arm(config, data, progress=False).model  # the same deterministic arm the run builds
    train(config, tmp_path, progress=False)
    trained = ef.load(tmp_path / "last.pt")
    before, after = dict(start.named_parameters()), dict(trained.named_parameters())
    fixed = [n for n, p in before.items() if not p.requires_grad]
    assert fixed and all(tensor_digest(before[n]) == tensor_digest(after[n]) for n in fixed)
    learned = [n for n, p in before.items() if p.requires_grad]
    assert any(not torch.equal(before[n], after[n]) for n in learned), "trainable weights must move"


def test_optimizer_never_sees_fixed_weights():
    from explainfix.train.step import build_optimizer, trainable_parameters

    model = ef.create_model("small_cnn")
    ef.initialize(model, "dct2", seed=0)
    optimizer = build_optimizer(trainable_parameters(model), "adam", lr=1e-3)
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    fixed = [p for p in model.parameters() if not p.requires_grad]
    assert fixed and not any(id(p) in in_optimizer for p in fixed)


def test_fixed_and_pruned_arm_trains_with_doubled_lr_and_writes_report(tmp_path):
    result = train({**SMOKE, "arm": {"init": "ghaar"}, "prune": {"ratio": 0.6, "batches": 2}, "optim": {"lr": 0.002}},
                   tmp_path, progress=False)
    assert result["prune"]["params_after"] < result["prune"]["params_before"]
    assert result["params"]["total"] == result["prune"]["params_after"]
    assert float(_rows(tmp_path)[0]["lr"]) == pytest.approx(0.004)
    assert (tmp_path / "prune_report.json").is_file()
    assert (tmp_path / "prune_report.txt").read_text().startswith("ChannelPrune")  # the readable summary, not JSON
    pruned = ef.load(tmp_path / "last.pt")
    assert sum(p.numel() for p in pruned.parameters()) == result["params"]["total"]


def test_segmentation_run_with_unet_d_reports_dice_and_explain_pictures(tmp_path):
    config = {"data": {"source": "synthetic:segment", "image_size": 32}, "model": {"name": "unet_d"},
              "arm": {"init": "ghaar"}, "epochs": 1, "max_steps_per_epoch": 2, "explain": {"batches": 1}}
    result = train(config, tmp_path, progress=False)
    assert result["monitor"]["metric"] == "val_dice"
    assert 0.0 <= result["test"]["last"]["dice"] <= 1.0 and -1.0 <= result["test"]["last"]["mcc"] <= 1.0
    for picture in ("ed_heatmap.png", "ed_heatmap_saliency.png", "e0.png", "spectra.json"):
        assert (tmp_path / "explain" / picture).is_file()


def test_same_seed_same_metrics(tmp_path):
    a = train(SMOKE, tmp_path / "a", progress=False)
    b = train(SMOKE, tmp_path / "b", progress=False)
    assert _without_timing(_rows(tmp_path / "a")) == _without_timing(_rows(tmp_path / "b"))
    assert a["test"] == b["test"]


def test_epoch_order_depends_on_seed_and_epoch_only_and_shards_partition_the_global_batch():
    a = epoch_keys(20, seed=3, epoch=5)
    assert a == epoch_keys(20, seed=3, epoch=5) and a != epoch_keys(20, seed=3, epoch=6)
    assert sorted(i for i, _ in a) == list(range(20))
    whole = list(ShardedBatches(a, 8))
    halves = [list(ShardedBatches(a, 8, rank=r, world_size=2)) for r in (0, 1)]
    assert [h0 + h1 for h0, h1 in zip(*halves)] == whole
    with pytest.raises(ValueError, match="divisible"):
        ShardedBatches(a, 7, world_size=2)


def test_finished_run_is_not_overwritten_unless_asked(tmp_path):
    train(SMOKE, tmp_path, progress=False)
    before = (tmp_path / "result.json").read_bytes()
    with pytest.raises(RunError, match="finished run"):
        train(SMOKE, tmp_path, progress=False)
    assert (tmp_path / "result.json").read_bytes() == before
    train({**SMOKE, "seed": 1}, tmp_path, overwrite=True, progress=False)
    assert json.loads((tmp_path / "result.json").read_text())["config_hash"] != json.loads(before)["config_hash"]


def _slow_config(tmp_path: Path) -> Path:
    config = {"data": {"source": "synthetic", "batch_size": 4}, "model": {"name": "small_cnn"}, "epochs": 3,
              "max_steps_per_epoch": 40, "arm": {"init": "ghaar"}, "explain": {"enabled": False}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _start(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "explainfix", "train", "--config", str(config), "--out", str(out),
                             "--no-progress", *extra], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(proc: subprocess.Popen, path: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.is_file():
        assert proc.poll() is None, f"run ended early: {proc.communicate()}"
        assert time.time() < deadline, "no checkpoint written in time"
        time.sleep(0.02)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_result(tmp_path):
    config = _slow_config(tmp_path)
    reference = tmp_path / "reference"
    assert main(["train", "--config", str(config), "--out", str(reference), "--no-progress"]) == 0

    killed = tmp_path / "killed"
    proc = _start(config, killed)
    _wait_for_checkpoint(proc, killed / "checkpoint.pt")
    time.sleep(0.3)  # into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "result.json").exists(), "the run was killed before it finished"
    assert main(["train", "--out", str(killed), "--resume", "--no-progress"]) == 0

    assert _without_timing(_rows(killed)) == _without_timing(_rows(reference))
    a, b = ef.load(reference / "last.pt").state_dict(), ef.load(killed / "last.pt").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (json.loads((p / "result.json").read_text()) for p in (reference, killed))
    assert ra["test"] == rb["test"] and ra["monitor"] == rb["monitor"]


@pytest.mark.slow
def test_ctrl_c_leaves_a_resumable_checkpoint_and_a_clean_message(tmp_path):
    config = _slow_config(tmp_path)
    out = tmp_path / "run"
    proc = _start(config, out)
    _wait_for_checkpoint(proc, out / "checkpoint.pt")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "--resume" in err and "Traceback" not in err
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert json.loads((out / "result.json").read_text())["epochs"] == 3


@pytest.mark.slow
def test_two_process_gloo_run_equals_one_process_with_the_same_global_batch(tmp_path):
    config = {"data": {"source": "synthetic", "batch_size": 8}, "model": {"name": "small_cnn", "kwargs": {"norm": "none"}},
              "epochs": 2, "max_steps_per_epoch": 4, "explain": {"enabled": False}, "runtime": {"device": "cpu"}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    single = train(config, tmp_path / "single", progress=False)
    torchrun = Path(sys.executable).parent / "torchrun"
    proc = subprocess.run([str(torchrun), "--nproc-per-node", "2", "-m", "explainfix", "train", "--config", str(path),
                           "--out", str(tmp_path / "ddp"), "--no-progress"], env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp" / "result.json").read_text())
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted(p.name for p in (tmp_path / "single").iterdir())
    a, b = ef.load(tmp_path / "single" / "last.pt").state_dict(), ef.load(tmp_path / "ddp" / "last.pt").state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    for ra, rb in zip(_rows(tmp_path / "single"), _rows(tmp_path / "ddp")):
        for key in ("train_loss", "val_loss", "val_auc"):
            assert float(ra[key]) == pytest.approx(float(rb[key]), rel=1e-5, abs=1e-6)


# --------------------------------------------------------------------------- bad input
def _cli_fails(tmp_path, capsys, *args: str, config: dict | None = None) -> str:
    out = tmp_path / "out"
    argv = ["train", "--out", str(out), "--no-progress", *args]
    if config is not None:
        path = tmp_path / "run.yaml"
        path.write_text(yaml.safe_dump(config))
        argv += ["--config", str(path)]
    assert main(argv) == 2
    assert not out.exists() or not any(out.iterdir()), "nothing may be written on bad input"
    return capsys.readouterr().err


def test_unknown_key_names_it_with_did_you_mean(tmp_path, capsys):
    err = _cli_fails(tmp_path, capsys, config={"optim": {"lrr": 0.1}})
    assert "optim.lrr" in err and "did you mean lr" in err
    err = _cli_fails(tmp_path, capsys, "--set", "epoch=3")
    assert "'epoch'" in err and "epochs" in err


@pytest.mark.parametrize("override, needle", [
    ("epochs=many", "epochs"),
    ("epochs=0", "greater than or equal to 1"),
    ("prune.ratio=1.5", "prune.ratio"),
    ("arm.init=ghar", "did you mean ghaar"),
    ("arm.init=guided_steer", "arm.guide"),
    ("data.source=nosuch", "unknown data source"),
    ("data.source=bbbc038:/no/such/folder", "no such folder"),
    ("model.name=resnet5O", "unknown model"),
    ("runtime.device=cuda", "CUDA is not available"),
])
def test_bad_values_fail_before_any_work(tmp_path, capsys, override, needle):
    if override.startswith("runtime.device") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert needle in _cli_fails(tmp_path, capsys, "--set", override)


def test_folder_without_images_fails(tmp_path, capsys):
    (tmp_path / "images" / "a").mkdir(parents=True)
    (tmp_path / "images" / "a" / "notes.txt").write_text("no images here")
    err = _cli_fails(tmp_path, capsys, "--set", f"data.source=folder:{tmp_path / 'images'}")
    assert "image" in err.lower()


def test_pretrained_file_of_another_architecture_fails(tmp_path, capsys):
    weights = tmp_path / "resnet18.pt"
    torch.save(ef.create_model("resnet18").state_dict(), weights)
    err = _cli_fails(tmp_path, capsys, "--set", "model.name=small_cnn", "--set", f"model.pretrained={weights}")
    assert "pretrained" in err
    err = _cli_fails(tmp_path, capsys, "--set", "model.name=unet_d", "--set", "data.source=synthetic:segment",
                     "--set", f"model.pretrained={weights}")
    assert "does not fit" in err


def test_guide_model_without_spatial_convs_fails(tmp_path, capsys):
    guide = tmp_path / "guide.pt"
    ef.save(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 1), torch.nn.Flatten()), guide)
    err = _cli_fails(tmp_path, capsys, "--set", "arm.init=guided_steer", "--set", f"arm.guide={guide}",
                     "--set", "model.trust_checkpoint=true")
    assert "spatial" in err


def test_resume_with_a_changed_config_fails_and_keeps_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    train(SMOKE, out, progress=False)
    (out / "result.json").unlink()  # as if killed after its last checkpoint
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main(["train", "--out", str(out), "--resume", "--set", "optim.lr=0.5", "--no-progress"]) == 2
    assert "config differs" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == files
    with pytest.raises(RunError, match="does not exist"):
        train(SMOKE, tmp_path / "never", resume=True, progress=False)


def test_config_errors_are_value_errors_with_the_file_name(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)
