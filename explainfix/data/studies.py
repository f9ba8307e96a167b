"""Per-image rows to per-study rows (CheXpert's study-level evaluation)."""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["aggregate_by_study"]


def aggregate_by_study(
    values: torch.Tensor, studies: Sequence[str], reduce: str = "max"
) -> tuple[list[str], torch.Tensor]:
    """Aggregate per-image rows into per-study rows (the paper's study-level test AUC).

    Args:
        values: ``(N, ...)`` per-image predictions (or labels, or masks).
        studies: ``N`` study ids, e.g. ``[study_id(p) for p in paths]`` or ``batch["meta"]["study"]``.
        reduce: ``"max"`` (default: a study is positive if any view is) or ``"mean"``.

    Returns:
        ``(study_ids, aggregated)``: ids in first-seen order and a ``(S, ...)`` tensor
        (float; ``bool`` for ``bool`` input, where ``"max"`` means "any view").

    Example:
        >>> aggregate_by_study(torch.tensor([[0.1], [0.7], [0.3]]), ["a", "a", "b"])
        (['a', 'b'], tensor([[0.7000],
                [0.3000]]))
    """
    values = torch.as_tensor(values)
    if values.shape[0] != len(studies):
        raise ValueError(f"got {values.shape[0]} rows of values but {len(studies)} study ids")
    if reduce not in ("max", "mean"):
        raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")
    order = list(dict.fromkeys(studies))
    lookup = {s: i for i, s in enumerate(order)}
    group = torch.tensor([lookup[s] for s in studies], dtype=torch.int64)
    src = values if values.is_floating_point() else values.float()
    index = group.view(-1, *([1] * (src.dim() - 1))).expand_as(src)
    out = torch.zeros((len(order), *src.shape[1:]), dtype=src.dtype).scatter_reduce(
        0, index, src, reduce="amax" if reduce == "max" else "mean", include_self=False
    )
    return order, out.bool() if values.dtype == torch.bool else out
