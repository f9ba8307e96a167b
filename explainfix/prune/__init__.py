"""ChannelPrune: saliency-based structural pruning of any CNN (Sec. 3.3 of the paper).

``channelprune(model, ratio, scores=...)`` zeroes the least-salient spatial kernels,
removes every channel that became dead across the whole dependency graph, and
re-initialises the remaining zeros with FillZero. See :func:`channelprune`.
"""
from __future__ import annotations

from .channelprune import channelprune, check_scores, default_example_inputs, weight_scores, zero_kernels
from .fillzero import FILLS, fill_zeros
from .report import PruneReport

__all__ = [
    "channelprune",
    "PruneReport",
    "weight_scores",
    "zero_kernels",
    "check_scores",
    "default_example_inputs",
    "fill_zeros",
    "FILLS",
]
