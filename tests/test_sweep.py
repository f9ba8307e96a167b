import json

import pytest

from explainfix.sweep import collect, expand, run_status, run_sweep

BASE = {"data": {"source": "synthetic:segment", "image_size": 32}, "model": {"name": "unet_d"}, "epochs": 2,
        "max_steps_per_epoch": 2, "explain": {"enabled": False}}


def _sweep(tmp_path, arms=("learned", "ghaar"), seeds=(0, 1)):
    return {"name": "t", "base": BASE, "grid": {"arm.init": list(arms), "seed": list(seeds)}, "out": str(tmp_path / "sw")}


def test_expand_stable_ids(tmp_path):
    runs = expand(_sweep(tmp_path))
    assert len(runs) == 4 and len({r.id for r in runs}) == 4
    assert runs[0].id.startswith("init-learned_seed-0_")
    assert [r.id for r in expand(_sweep(tmp_path))] == [r.id for r in runs]


def test_inline_skip_resume_collect(tmp_path):
    sw = _sweep(tmp_path, arms=("learned", "ghaar"), seeds=(0,))
    assert len(run_sweep(sw)) == 2
    assert run_sweep(sw) == []  # finished runs skipped
    runs = expand(sw)
    (runs[1].folder / "result.json").unlink()
    if (runs[1].folder / "checkpoint.pt").is_file():
        assert run_status(runs[1]) == "killed"
    assert run_sweep(sw) == [runs[1].id]
    results, epochs = collect(sw)
    assert len(results) == 2 and (tmp_path / "sw" / "results.csv").is_file()
    assert len(epochs) == 4 and "val_dice" in epochs.columns


def test_submitit_debug_executor(tmp_path):
    pytest.importorskip("submitit")
    sw = _sweep(tmp_path, arms=("ghaar",), seeds=(0,))
    sw["base"] = dict(BASE, epochs=1, max_steps_per_epoch=1)
    assert len(run_sweep(sw, executor="debug")) == 1
    assert json.loads((expand(sw)[0].folder / "result.json").read_text())["status"]
