"""measure_latency / compare_latency and ``explainfix prune --latency`` (no timed asserts: a fake clock)."""
from __future__ import annotations

import json
import statistics

import numpy as np
import pytest
import torch
from torch import nn

from explainfix.cli import main
from explainfix.prune import latency
from explainfix.prune.latency import compare_latency, measure_latency


class Clock:
    """A fake ``timer``: time advances only when a :class:`Costly` model runs."""

    def __init__(self):
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now


class Costly(nn.Module):
    """Takes ``costs[i]`` fake seconds per sample on its i-th call (cycling); records its mode."""

    def __init__(self, clock: Clock, name: str, costs):
        super().__init__()
        self.clock, self.name, self.costs = clock, name, list(costs)
        self.bn = nn.BatchNorm1d(2)
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, x):
        self.seen.append((self.training, torch.is_grad_enabled()))
        self.clock.now += self.costs[len(self.seen) % len(self.costs) - 1] * x.shape[0]
        self.clock.calls.append(self.name)
        return self.bn(x)


def test_measure_latency_exact_statistics_eval_no_grad_and_flags_restored():
    clock = Clock()
    costs = [0.5, 3.0, 1.0, 2.0, 9.0, 4.0, 7.0]  # the first 2 are warm-up passes
    model = Costly(clock, "m", costs).train()
    model.bn.eval()  # a mixed state must come back as it was
    x = torch.randn(3, 2, requires_grad=True)
    before_stats = model.bn.running_mean.clone()
    lat = measure_latency(model, x, warmup=2, repeats=5, timer=clock)
    timed = [3 * c for c in costs[2:]]
    assert lat.median_s == pytest.approx(statistics.median(timed))
    assert lat.iqr_s == pytest.approx(np.percentile(timed, 75) - np.percentile(timed, 25))
    assert (lat.batch_size, lat.device, lat.repeats, lat.warmup) == (3, "cpu", 5, 2)
    assert model.seen == [(False, False)] * 7  # eval mode, no autograd, 2 + 5 passes
    assert model.training and not model.bn.training
    assert torch.equal(model.bn.running_mean, before_stats)
    assert lat.to_dict()["median_ms"] == pytest.approx(1e3 * lat.median_s)


def test_compare_latency_interleaves_and_warns_when_after_is_slower():
    clock = Clock()
    before, after = Costly(clock, "before", [1.0]), Costly(clock, "after", [2.0])
    result = compare_latency(before, after, torch.randn(1, 2), batch_sizes=(1, 4, 4), warmup=1, repeats=3,
                             timer=clock)
    # alternating order per pass, so drift hits both arms alike; batch sizes deduplicated
    assert clock.calls[:8] == ["before", "after", "after", "before"] * 2
    assert len(clock.calls) == 2 * 2 * (1 + 3)
    assert result.batch_sizes == (1, 4)
    assert {b: lat.median_s for b, lat in result.before.items()} == {1: 1.0, 4: 4.0}
    assert {b: lat.median_s for b, lat in result.after.items()} == {1: 2.0, 4: 8.0}
    assert result.speedup == {1: 0.5, 4: 0.5}
    assert result.slower == (1, 4)
    warning = result.warning()
    assert warning.startswith("WARNING") and "batch 1: 1000 ms -> 2000 ms, 0.50x, IQR 0 ms; batch 4: 4000 ms" in warning
    assert json.loads(json.dumps(result.to_dict()))["4"]["speedup"] == 0.5
    assert "speed-up 0.50x" in result.summary()
    # the other way round: faster, no warning
    swapped = compare_latency(after, before, torch.randn(2, 2), batch_sizes=(3,), repeats=2, timer=clock)
    assert swapped.speedup == {3: 2.0} and swapped.slower == () and swapped.warning() is None


def test_real_clock_on_small_convs():
    big = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3)).train()
    small = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3)).eval()
    result = compare_latency(big, small, torch.randn(1, 1, 16, 16), batch_sizes=(1, 2), warmup=1, repeats=3)
    for side in (result.before, result.after):
        assert [lat.batch_size for lat in side.values()] == [1, 2]
        assert all(lat.median_s > 0 and lat.iqr_s >= 0 and lat.device == "cpu" for lat in side.values())
    assert all(s > 0 for s in result.speedup.values())
    assert big.training and not small.training
    assert measure_latency(small, [torch.randn(2, 1, 8, 8)], warmup=0, repeats=1).iqr_s == 0.0


def test_bad_arguments_name_the_problem():
    conv, x = nn.Conv2d(1, 1, 3), torch.randn(1, 1, 8, 8)
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(conv, x, repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        measure_latency(conv, x, warmup=-1)
    with pytest.raises(ValueError, match="batch_sizes"):
        compare_latency(conv, conv, x, batch_sizes=(1, 0))
    with pytest.raises(ValueError, match="batch dimension"):
        measure_latency(conv, torch.tensor(1.0))


def test_cuda_passes_are_synchronised(monkeypatch):
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    device = torch.device("cuda", 0)
    latency._synchronizer(device)()
    latency._synchronizer(torch.device("cpu"))()
    assert synced == [device]


def test_cli_prune_latency_report(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["prune", "--model", "resnet18", "--ratio", "0.9", "--input-size", "1", "32", "32", "--latency",
                 "--latency-batch", "2", "--latency-repeats", "2", "--no-progress", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["latency"]) == {"1", "2"}
    for b, row in report["latency"].items():
        assert row["before"]["batch_size"] == row["after"]["batch_size"] == int(b)
        assert row["before"]["median_s"] > 0 and row["after"]["median_s"] > 0 and row["speedup"] > 0
        assert row["speedup"] == pytest.approx(row["before"]["median_s"] / row["after"]["median_s"])
    assert "latency on cpu" in (out / "report.txt").read_text()
    assert "latency on cpu" in capsys.readouterr().out
    assert main(["prune", "--model", "resnet18", "--ratio", "0.5", "--latency", "--latency-batch", "0",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "--latency-batch" in capsys.readouterr().err


def test_cli_prune_warns_when_pruned_is_slower(tmp_path, capsys, monkeypatch):
    real = latency.compare_latency

    def pruned_twice_as_slow(before, after, example, **kwargs):
        clock = Clock()
        hooks = [model.register_forward_hook(lambda m, i, o, cost=cost: setattr(clock, "now", clock.now + cost))
                 for model, cost in ((before, 1.0), (after, 2.0))]
        try:
            return real(before, after, example, timer=clock, **kwargs)
        finally:
            for hook in hooks:
                hook.remove()

    monkeypatch.setattr(latency, "compare_latency", pruned_twice_as_slow)
    out = tmp_path / "slow"
    assert main(["prune", "--model", "resnet18", "--ratio", "0.9", "--input-size", "1", "32", "32", "--latency",
                 "--latency-repeats", "1", "--no-progress", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("WARNING: the pruned model is slower") and "batch 8" in err
    assert "WARNING" in (out / "report.txt").read_text()
    assert json.loads((out / "report.json").read_text())["latency"]["8"]["speedup"] == 0.5
