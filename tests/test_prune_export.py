"""A pruned model still exports: torch.export, torch.jit.trace and ONNX (run by ONNX Runtime)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from explainfix.prune import channelprune, weight_scores


@pytest.fixture(scope="module")
def pruned():
    """torchvision ResNet18 with 95 % of its spatial kernels zeroed and dead channels removed."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    report = channelprune(model, 0.95, scores=weight_scores(model), example_inputs=torch.randn(1, 3, 32, 32),
                          seed=0, progress=False)
    assert report.params_kept < 0.5
    assert model.layer4[0].conv1.out_channels == 9  # odd channel counts, not a multiple of anything
    return model


def inputs(batch: int) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))


def reference(model, x) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def test_torch_export_with_dynamic_batch(pruned):
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(pruned, (inputs(2),), dynamic_shapes=({0: batch},))
    weights = {tuple(p.shape) for p in program.state_dict.values()}
    assert (9, 256, 3, 3) in weights  # the exported program holds the pruned layers
    for b in (1, 3):
        x = inputs(b)
        out = program.module()(x)
        assert out.shape == (b, 10)
        torch.testing.assert_close(out, reference(pruned, x), rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace")
def test_torch_jit_trace(pruned):
    traced = torch.jit.trace(pruned, inputs(2))
    x = inputs(3)
    torch.testing.assert_close(traced(x), reference(pruned, x), rtol=1e-5, atol=1e-6)


def test_onnx_export_runs_in_onnxruntime(pruned, tmp_path):
    onnx = pytest.importorskip("onnx", reason="ONNX export needs the 'test' extra (onnx, onnxscript, onnxruntime)")
    pytest.importorskip("onnxscript", reason="torch.onnx.export (dynamo) needs onnxscript")
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "pruned.onnx"
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.onnx.export(pruned, (inputs(2),), path, dynamo=True, verbose=False, input_names=["image"],
                      output_names=["logits"], dynamic_shapes=({0: batch},))
    graph = onnx.load(str(path)).graph
    assert (9, 256, 3, 3) in {tuple(t.dims) for t in graph.initializer}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b in (1, 3):
        x = inputs(b)
        (out,) = session.run(["logits"], {"image": x.numpy()})
        expected = reference(pruned, x).numpy()
        assert out.shape == (b, 10)
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-4)
        assert np.abs(expected).max() > 1e-2  # a real comparison, not two tiny numbers
