"""The experiment scripts under experiments/ run end to end in their tiniest settings."""
from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load(name: str):
    """Import experiments/<name>.py as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_outputs(out: Path, name: str) -> tuple[list[dict], dict, str]:
    with open(out / f"{name}.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    payload = json.loads((out / f"{name}.json").read_text())
    markdown = (out / f"{name}.md").read_text()
    assert not list(out.glob(".*.tmp")), "atomic writes left a temporary file"
    return rows, payload, markdown


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def test_table3_counts_are_exact(tmp_path):
    mod = load("table3_spatial_params")
    rows = mod.main(["--models", "resnet50", "densenet121", "efficientnet_b0", "unet_d", "--out", str(tmp_path)])
    by = {r["model"]: r for r in rows}
    assert (by["resnet50"]["params"], by["resnet50"]["spatial_params"]) == (23_512_005, 11_320_384)
    assert (by["densenet121"]["params"], by["densenet121"]["spatial_params"]) == (6_952_709, 2_141_248)
    assert (by["efficientnet_b0"]["params"], by["efficientnet_b0"]["spatial_params"]) == (4_013_377, 182_304)
    assert (by["unet_d"]["params"], by["unet_d"]["spatial_params"]) == (116_695, 12_744)
    assert by["resnet50"]["spatial_ratio"] == pytest.approx(0.4815, abs=1e-4)
    assert all(by[m]["matches_paper"] is True for m in ("resnet50", "densenet121", "efficientnet_b0"))
    assert by["unet_d"]["matches_paper"] is None  # not in Table 3
    csv_rows, payload, markdown = read_outputs(tmp_path, "table3_spatial_params")
    assert [r["model"] for r in csv_rows] == ["resnet50", "densenet121", "efficientnet_b0", "unet_d"]
    assert int(csv_rows[0]["spatial_params"]) == 11_320_384
    assert payload["rows"][1]["spatial_kernels"] == 237_632
    assert "| resnet50 | 1/5 | 23,512,005 | 11,320,384 |" in markdown


def test_table3_paper_precision_check():
    mod = load("table3_spatial_params")
    assert mod._matches_paper(11_320_384, 0.4815, (11.3, 48))
    assert not mod._matches_paper(11_420_384, 0.4815, (11.3, 48))  # 11.4e6
    assert not mod._matches_paper(11_320_384, 0.4749, (11.3, 48))  # 47 %, not 48 %


def test_tableB1_unet_d_exact(tmp_path):
    rows = load("tableB1_unet_d").main(["--quick", "--out", str(tmp_path)])
    assert len(rows) == 1
    row = rows[0]
    assert (row["params"], row["spatial_params"]) == (116_695, 12_744)
    assert row["exact_match"] is True and row["params_diff"] == 0
    _, payload, markdown = read_outputs(tmp_path, "tableB1_unet_d")
    assert payload["rows"][0]["paper_params"] == 116_695
    assert "not DeepLabV3+" in markdown


@pytest.mark.slow
def test_tableB1_deeplab_rows(tmp_path):
    rows = load("tableB1_unet_d").main(["--out", str(tmp_path)])
    by = {r["model"]: r for r in rows}
    r50 = by["DeepLabV3 ResNet50"]
    assert (r50["params"], r50["spatial_params"]) == (39_633_729, 26_072_256)
    assert r50["paper_model"] == "DeepLabV3+ ResNet50" and r50["exact_match"] is False
    assert abs(r50["params_diff"]) / r50["paper_params"] < 0.005
    assert by["DeepLabV3 MobileNetV3-Large"]["paper_model"] == "DeepLabV3+ MobileNetV2"


def test_tableM1_quick_prunes_some_but_not_all(tmp_path):
    rows = load("tableM1_zeroed_vs_pruned").main(["--quick", "--out", str(tmp_path)])
    assert [(r["model"], round(r["zeroed"], 2)) for r in rows] == [("resnet18", 0.9), ("resnet18", 0.99)]
    for r, ratio in zip(rows, (0.9, 0.99)):
        assert r["zeroed"] == pytest.approx(ratio, abs=1e-5)
        assert 0 < r["pruned"] < 1 and r["params_after"] < r["params_before"]
        assert 0 < r["macs_pruned"] < 1
        assert r["pruned"] < r["zeroed"]  # mostly-zero rows cannot all go
        assert r["max_rel_diff"] < 1e-4  # pruned = zeroed
    assert rows[1]["pruned"] > rows[0]["pruned"]
    csv_rows, payload, markdown = read_outputs(tmp_path, "tableM1_zeroed_vs_pruned")
    assert len(csv_rows) == 2 and payload["settings"]["size"] == 64
    assert "random-init" in markdown and "trained on CheXpert" in markdown


def test_tableM1_rejects_percentages():
    mod = load("tableM1_zeroed_vs_pruned")
    assert mod.parse_run("resnet50:0.99") == ("resnet50", 0.99)
    for bad in ("resnet50:99", "resnet50", "resnet50:x", ":0.5"):
        with pytest.raises(SystemExit):
            mod.parse_run(bad)


def test_fig12_sanity_checks_pass(tmp_path):
    rows = load("fig12_explainsteer").main(["--quick", "--out", str(tmp_path)])
    by = {r["init"]: r for r in rows}
    assert set(by) == {"ones", "dct2", "unchanged", "ghaar", "psine", "guided_steer", "guided_steer (guide: ghaar)"}
    assert by["dct2"]["flatness"] > 0.999
    assert by["ones"]["dc_share"] > 0.999
    assert by["unchanged"]["dist_to_guide"] == 0.0
    assert by["guided_steer"]["dist_to_guide"] < 0.25 < by["ghaar"]["dist_to_guide"]
    assert by["guided_steer"]["energy_vs_guide"] == pytest.approx(1.0, abs=0.25)
    assert by["ghaar"]["low_high"] > 1.5 and by["psine"]["low_high"] > 1.0
    assert by["ones"]["low_high"] is None  # nothing but round-off beside the constant filter
    steered = by["guided_steer (guide: ghaar)"]  # a guide whose spectrum is not flat
    assert steered["dist_to_guide"] < 0.25 < by["psine"]["dist_to_guide"]
    assert steered["low_high"] == pytest.approx(by["ghaar"]["low_high"], rel=0.25)
    assert all(r["passes"] is not False for r in rows)
    assert sum(r["passes"] is True for r in rows) == 6
    for name in ("fig12a_ed_all_inits", "fig12b_e0_by_init", "fig12a_ed_guided_steer_guide_ghaar"):
        assert is_png(tmp_path / f"{name}.png")
    _, payload, _ = read_outputs(tmp_path, "fig12_explainsteer")
    assert set(payload["spectra"]) == set(by) and len(payload["figures"]) == 9


def test_figI1_least_salient_matters_least(tmp_path):
    rows = load("figI1_zeroing_sanity").main(["--quick", "--out", str(tmp_path)])
    assert [r["zeroed"] for r in rows] == [0.1, 0.5, 0.9]
    for r in rows:
        assert r["rel_change_least"] < r["rel_change_random"] < r["rel_change_most"] * 1.05
        assert r["least_le_most"] is True
    assert rows[0]["rel_change_least"] < 0.5 * rows[0]["rel_change_most"]
    assert is_png(tmp_path / "figI1_zeroing_sanity.png")
    _, _, markdown = read_outputs(tmp_path, "figI1_zeroing_sanity")
    assert "no accuracy here" in markdown


@pytest.mark.slow
def test_figs3to7_pictures(tmp_path):
    rows = load("figs3to7_filters").main(["--out", str(tmp_path)])
    assert len(rows) == 7
    assert all(is_png(tmp_path / r["file"]) for r in rows)
