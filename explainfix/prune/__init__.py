"""ChannelPrune: saliency-based structural pruning of any CNN (Sec. 3.3 of the paper).

``channelprune(model, ratio, scores=...)`` zeroes the least-salient spatial kernels,
removes every channel that became dead across the whole dependency graph, and
re-initialises the remaining zeros with FillZero. See :func:`channelprune`.

Cost: fewer parameters and MACs are not less latency. :func:`compare_latency` times
the model before and after pruning side by side (interleaved, eval mode, synchronised
on CUDA) at several batch sizes; ``explainfix prune --latency`` adds these figures to
its report and warns when the pruned model is slower.

Export: a pruned model is an ordinary ``nn.Module`` with smaller layers, so it exports
like the unpruned one: ``torch.export.export(model, (x,))`` and ``torch.jit.trace``
reproduce its outputs to float rounding, and ``torch.onnx.export(model, (x,),
"model.onnx", dynamo=True)`` (needs the ``onnx`` and ``onnxscript`` packages) gives a
file whose ONNX Runtime outputs match PyTorch within 1e-4. Put the model in eval mode
first; for a dynamic batch dimension (``dynamic_shapes=({0: torch.export.Dim("batch")},)``)
give an example batch of 2 or more, since a batch of 1 is specialised. A model read back
with :func:`explainfix.load` exports the same way.
"""
from __future__ import annotations

from .channelprune import (
    DEFAULT_MODE,
    NORMS,
    channelprune,
    check_scores,
    default_example_inputs,
    weight_scores,
    zero_kernels,
)
from .fillzero import FILLS, fill_zeros
from .latency import Latency, LatencyComparison, compare_latency, measure_latency
from .report import PruneReport, PruneWarning

__all__ = [
    "channelprune",
    "PruneReport",
    "PruneWarning",
    "DEFAULT_MODE",
    "NORMS",
    "weight_scores",
    "zero_kernels",
    "check_scores",
    "default_example_inputs",
    "fill_zeros",
    "FILLS",
    "measure_latency",
    "compare_latency",
    "Latency",
    "LatencyComparison",
]
