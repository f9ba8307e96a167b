"""PruneReport: what ChannelPrune did (the quantities of Table M.1 and Fig. 11)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["PruneReport", "PruneWarning"]


class PruneWarning(UserWarning):
    """A pruned model that changed, or that is degenerate (see :attr:`PruneReport.warnings`)."""


@dataclass(frozen=True)
class PruneReport:
    """Result of :func:`explainfix.channelprune`.

    Attributes:
        ratio: Fraction of spatial kernels asked to be zeroed, in [0, 1).
        mode: ``"paper"`` or ``"exact"``.
        fill: ``"fillzero"``, ``"reset"`` or ``"none"``.
        kernels_total: Number of spatial kernels (2-D slices ``weight[a, b]``) in the model.
        kernels_zeroed: Number of spatial kernels zeroed in step 2.
        params_before / params_after: Number of parameters.
        macs_before / macs_after: Multiply-accumulates of one forward pass at
            ``input_shape`` (Torch-Pruning's counter; ``None`` if it could not run).
        input_shape: Shape of the example input used for tracing and counting.
        channels: ``{layer name: (out channels before, after)}`` for every conv and
            linear layer (transposed convs: output channels too).
        seconds: Wall time of each step, in execution order.
        ghost_biases_dropped: BatchNorm shifts / conv biases of dead channels set to 0
            (``mode="paper"`` only).
        max_rel_diff: ChannelPrune's self-check: largest relative difference (float64,
            before FillZero) between the pruned model and its reference - the zeroed
            model, with ghost biases dropped in ``mode="paper"``; ``None`` if not verified.
        change_vs_zeroed: The true change: largest relative difference between the
            pruned model (before FillZero) and the model handed in after zeroing, on the
            example input (float64). 0 up to rounding in ``mode="exact"``.
        change_vs_original: The same against the model handed in, before zeroing.
        biases_folded: Layers whose bias absorbed the constants of removed channels.
        warnings: Degenerate results and large changes (also raised as ``PruneWarning``).
        seed: Seed of the FillZero generator.
        groups: Dependency groups (sets of coupled channels) examined.
        groups_pruned: Groups that lost at least one channel.
        refused: Why channels had to stay, ``{reason: group members}`` (e.g. ``"model
            output"``, ``"grouped conv"``, ``"op Transpose"``) - where to look when a
            model prunes less than expected.
    """

    ratio: float
    mode: str
    fill: str
    kernels_total: int
    kernels_zeroed: int
    params_before: int
    params_after: int
    macs_before: int | None
    macs_after: int | None
    input_shape: tuple[int, ...]
    channels: dict[str, tuple[int, int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    ghost_biases_dropped: int = 0
    max_rel_diff: float | None = None
    seed: int | None = None
    groups: int = 0
    groups_pruned: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    change_vs_zeroed: float | None = None
    change_vs_original: float | None = None
    biases_folded: int = 0
    warnings: tuple[str, ...] = ()

    @property
    def kernels_zeroed_fraction(self) -> float:
        return self.kernels_zeroed / self.kernels_total if self.kernels_total else 0.0

    @property
    def params_kept(self) -> float:
        """Fraction of parameters kept (the paper's "% pruned" is ``1 - params_kept``)."""
        return self.params_after / self.params_before if self.params_before else 1.0

    @property
    def macs_kept(self) -> float | None:
        if not self.macs_before or self.macs_after is None:
            return None
        return self.macs_after / self.macs_before

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds.values()))

    @property
    def layers_changed(self) -> int:
        return sum(1 for b, a in self.channels.values() if b != a)

    def to_dict(self) -> dict:
        """JSON-ready dict (derived fractions included)."""
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["channels"] = {k: list(v) for k, v in self.channels.items()}
        d["warnings"] = list(self.warnings)
        d.update(
            kernels_zeroed_fraction=self.kernels_zeroed_fraction,
            params_kept=self.params_kept,
            macs_kept=self.macs_kept,
            total_seconds=self.total_seconds,
        )
        return d

    def summary(self) -> str:
        """A short human-readable table."""

        def pct(x):
            return "n/a" if x is None else f"{100 * x:.1f}%"

        def big(x):
            return "n/a" if x is None else f"{x:,}"

        lines = [
            f"ChannelPrune  ratio={self.ratio}  mode={self.mode}  fill={self.fill}",
            f"  spatial kernels zeroed : {self.kernels_zeroed:,} / {self.kernels_total:,} "
            f"({pct(self.kernels_zeroed_fraction)})",
            f"  parameters             : {big(self.params_before)} -> {big(self.params_after)} "
            f"(kept {pct(self.params_kept)}, pruned {pct(1 - self.params_kept)})",
            f"  MACs @ {tuple(self.input_shape)} : {big(self.macs_before)} -> {big(self.macs_after)} "
            f"(kept {pct(self.macs_kept)})",
            f"  layers with fewer channels: {self.layers_changed} / {len(self.channels)}  "
            f"(dependency groups pruned: {self.groups_pruned} / {self.groups})",
        ]
        if self.refused:
            kept = ", ".join(f"{k} ({v})" for k, v in sorted(self.refused.items()))
            lines.append(f"  kept whole because of : {kept}")
        if self.mode == "paper":
            ghost = f"  ghost biases dropped   : {self.ghost_biases_dropped}"
            if self.change_vs_zeroed is not None:  # the measured cost of dropping them
                ghost += f" (output change {self.change_vs_zeroed:.2e} vs the zeroed model, measured)"
            lines.append(ghost)
        lines.append(f"  constants folded into biases of: {self.biases_folded} layers")
        if self.change_vs_zeroed is not None:
            lines.append(f"  pruned vs zeroed model  (before FillZero): max rel change {self.change_vs_zeroed:.2e}")
        if self.change_vs_original is not None:
            lines.append(f"  pruned vs model handed in (before zeroing): max rel change {self.change_vs_original:.2e}")
        if self.max_rel_diff is not None:
            ref = "zeroed with ghost biases dropped" if self.mode == "paper" else "zeroed"
            lines.append(f"  self-check vs {ref}: max rel diff {self.max_rel_diff:.2e}")
        for w in self.warnings:
            lines.append(f"  WARNING: {w}")
        steps = "  ".join(f"{k} {v:.3f}s" for k, v in self.seconds.items())
        lines.append(f"  time: {steps}  (total {self.total_seconds:.3f}s)")
        return "\n".join(lines)
