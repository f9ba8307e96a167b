"""ExplainSteer: per-layer DCT-II energy spectra of a model's spatial filters (Sec. 3.2)."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

from explainfix.explain.saliency import spatial_saliency
from explainfix.explain.spectra import Spectra, spectra
from explainfix.spatial import _require_spatial

__all__ = ["LayerSpectra", "ExplainSteerResult", "explainsteer", "shape_label"]

#: the saliency method ``spatial_saliency`` uses when none is given (reported in the result)
_DEFAULT_METHOD = inspect.signature(spatial_saliency).parameters["method"].default


def shape_label(shape: Sequence[int]) -> str:
    """``(3, 3) -> "3x3"``: the key of a kernel shape in JSON and figure titles."""
    return "x".join(str(int(s)) for s in shape)


@dataclass(frozen=True)
class LayerSpectra:
    """Spectra of one spatial convolution layer.

    Attributes:
        name: The layer's name in ``model.named_modules()``.
        layer_type: Its class name, e.g. ``"Conv2d"``.
        kernel_shape: Spatial kernel shape, e.g. ``(3, 3)``.
        n_kernels: Number of kernels, ``weight.shape[0] * weight.shape[1]``.
        spectra: Its :class:`~explainfix.explain.spectra.Spectra` (on the CPU).
    """

    name: str
    layer_type: str
    kernel_shape: tuple[int, ...]
    n_kernels: int
    spectra: Spectra

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "type": self.layer_type,
            "kernel_shape": list(self.kernel_shape),
            "n_kernels": self.n_kernels,
            **{k: v for k, v in self.spectra.to_dict().items() if k != "shape"},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "LayerSpectra":
        """The inverse of :meth:`to_dict`."""
        shape = tuple(int(s) for s in d["kernel_shape"])
        return cls(d["name"], d["type"], shape, int(d["n_kernels"]), Spectra.from_dict({**d, "shape": shape}))


@dataclass(frozen=True)
class ExplainSteerResult:
    """ExplainSteer spectra of every spatial convolution of a model, in model order.

    Attributes:
        layers: One :class:`LayerSpectra` per spatial conv.
        saliency: The saliency method that weighted the kernels (``"grad_x_weight"``
            or ``"grad"``), or ``None`` for uniform weights ``1/n``.
        n_batches: Minibatches the saliency was summed over (``None`` without).
    """

    layers: tuple[LayerSpectra, ...]
    saliency: str | None = None
    n_batches: int | None = None

    @property
    def kernel_shapes(self) -> tuple[tuple[int, ...], ...]:
        """The distinct kernel shapes, in order of first appearance."""
        return tuple(dict.fromkeys(layer.kernel_shape for layer in self.layers))

    def by_shape(self) -> dict[tuple[int, ...], list[LayerSpectra]]:
        """Layers grouped by kernel shape (model order within a group)."""
        groups: dict[tuple[int, ...], list[LayerSpectra]] = {s: [] for s in self.kernel_shapes}
        for layer in self.layers:
            groups[layer.kernel_shape].append(layer)
        return groups

    def layer(self, name: str) -> LayerSpectra:
        """The layer called ``name``; ``KeyError`` if there is none."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no spatial conv called {name!r}; layers are {[l.name for l in self.layers]}")

    def _select(self, shape: Sequence[int], skip: Iterable[str] = ()) -> list[LayerSpectra]:
        shape = tuple(int(s) for s in shape)
        skip = set(skip)
        if shape not in self.kernel_shapes:
            raise KeyError(f"no spatial conv has kernel shape {shape}; shapes are {list(self.kernel_shapes)}")
        return [l for l in self.by_shape()[shape] if l.name not in skip]

    def ed_matrix(self, shape: Sequence[int], skip: Iterable[str] = ()) -> tuple[torch.Tensor, list[str]]:
        """The ``e^(d)`` heatmap of one kernel shape.

        Returns:
            ``(E, names)``: ``E[q, l]`` is the energy of basis filter ``q`` (frequency
            order) in layer ``names[l]`` (model order); layers in ``skip`` are left
            out.

        Shape:
            - E: ``(prod(shape), n_layers)``
        """
        layers = self._select(shape, skip)
        m = 1
        for s in shape:
            m *= int(s)
        if not layers:
            return torch.zeros(m, 0, dtype=torch.float64), []
        return torch.stack([l.spectra.ed for l in layers], dim=1), [l.name for l in layers]

    def _select_some(self, shape: Sequence[int], skip: Iterable[str]) -> list[LayerSpectra]:
        layers = self._select(shape, skip)
        if not layers:
            raise ValueError(f"every layer with kernel shape {tuple(shape)} is skipped")
        return layers

    def global_e1(self, shape: Sequence[int], skip: Iterable[str] = ()) -> torch.Tensor:
        """``e^(1)`` summed over all layers of one kernel shape, shape ``(sum(shape),)``."""
        layers = self._select_some(shape, skip)
        return torch.stack([l.spectra.e1 for l in layers]).sum(0)

    def global_e0(self, shape: Sequence[int], skip: Iterable[str] = ()) -> torch.Tensor | None:
        """``e^(0)`` summed over all layers of one kernel shape (Fig. 12b).

        ``None`` for non-square shapes (Eq. 6 defines no ``e^(0)`` there).
        """
        layers = self._select_some(shape, skip)
        if layers[0].spectra.e0 is None:
            return None
        return torch.stack([l.spectra.e0 for l in layers]).sum(0)

    def to_dict(self) -> dict:
        """Every spectrum as JSON-serialisable plain types.

        Keys: ``saliency``, ``n_batches``, ``layers`` (one dict per layer: name,
        type, kernel_shape, n_kernels, order, ed, ed_raster, e1, e0) and ``global``
        (per kernel shape ``"3x3"``: layer count, summed e1 and e0).
        """
        glob = {}
        for shape, layers in self.by_shape().items():
            e0 = self.global_e0(shape)
            glob[shape_label(shape)] = {
                "kernel_shape": list(shape),
                "n_layers": len(layers),
                "n_kernels": sum(l.n_kernels for l in layers),
                "e1": self.global_e1(shape).tolist(),
                "e0": None if e0 is None else e0.tolist(),
            }
        return {
            "saliency": self.saliency,
            "n_batches": self.n_batches,
            "layers": [layer.to_dict() for layer in self.layers],
            "global": glob,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ExplainSteerResult":
        """The inverse of :meth:`to_dict` (e.g. a training run's ``explain/spectra.json``)."""
        return cls(tuple(LayerSpectra.from_dict(layer) for layer in d["layers"]), d.get("saliency"), d.get("n_batches"))


def explainsteer(
    model: nn.Module,
    loader: Iterable | None = None,
    *,
    dtype: torch.dtype | None = None,
    **saliency_options,
) -> ExplainSteerResult:
    """ExplainSteer (Algorithm 2): the energy spectra of every spatial conv of a model.

    Without a loader every kernel of a layer weighs ``1/n`` (how the model is
    steered: the sanity-check view). With a loader each kernel weighs its
    saliency (Eq. 4, :func:`~explainfix.explain.saliency.spatial_saliency`, summed
    over the loader's minibatches), exposing which frequencies and layers the
    model relies on.

    Args:
        model: Any module with spatial convolutions; layers of different kernel
            shapes (3x3, 5x5, 7x7, 1-D, 3-D) are fine.
        loader: Optional iterable of batches for saliency (see
            :func:`~explainfix.explain.saliency.spatial_saliency` for the formats).
        dtype: Floating dtype of the spectra computation; default the weights'
            dtype (half precision promoted to float32). Pass ``torch.float64`` for
            float64 spectra of a float32 model.
        **saliency_options: ``method``, ``target``, ``max_batches``, ``progress``
            of :func:`~explainfix.explain.saliency.spatial_saliency`; only with a
            loader.

    Returns:
        :class:`ExplainSteerResult` with one :class:`LayerSpectra` per spatial
        conv (tensors on the CPU). The model is left unchanged.

    Raises:
        NoSpatialConvError: if the model has no spatial convolution.
        ValueError: saliency options without a loader, a ``dtype`` that is not
            floating point, or any error of ``spatial_saliency``.

    Example:
        >>> import torchvision
        >>> result = explainsteer(torchvision.models.resnet18())
        >>> result.kernel_shapes
        ((7, 7), (3, 3))
        >>> result.layers[1].spectra.ed.shape
        torch.Size([9])
    """
    if loader is None and saliency_options:
        raise ValueError(f"saliency options {sorted(saliency_options)} need a loader")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating point torch.dtype (e.g. torch.float64), got {dtype!r}")
    layers = _require_spatial(model, "nothing to explain")
    scores = None
    method = None
    if loader is not None:
        method = saliency_options.get("method", _DEFAULT_METHOD)
        counter = _CountingIterable(loader)
        scores = spatial_saliency(model, counter, **saliency_options)
    results = []
    for name, module in layers:
        weight = module.weight.detach()
        kernel_shape = tuple(int(k) for k in weight.shape[2:])
        if dtype is not None:
            weight = weight.to(dtype)
        w = None if scores is None else scores[name].reshape(-1)
        s = spectra(weight.reshape(-1, *kernel_shape), w, kernel_shape)
        s = Spectra(
            ed=s.ed.cpu(), ed_raster=s.ed_raster.cpu(), e1=s.e1.cpu(),
            e0=None if s.e0 is None else s.e0.cpu(), shape=s.shape, order=s.order,
        )
        results.append(LayerSpectra(name, type(module).__name__, kernel_shape, weight.shape[0] * weight.shape[1], s))
    return ExplainSteerResult(tuple(results), method, None if loader is None else counter.count)


class _CountingIterable:
    """Wraps a loader and counts the batches drawn from it (keeps ``len``)."""

    def __init__(self, loader: Iterable):
        self.loader = loader
        self.count = 0

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self):
        for batch in self.loader:
            self.count += 1
            yield batch
