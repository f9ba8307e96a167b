"""A data spec ``NAME[:OPTION]`` as batches of real or synthetic data.

:func:`data_source` gives a bounded loader of ``(x, y)`` batches (and a target callable when
the data has no labels), the form :func:`explainfix.spatial_saliency`,
:func:`explainfix.explainsteer` and :func:`explainfix.channelprune` take. The CLI's
``--data``, the training loop and the experiments share it.

Data sources (:data:`DATA_SOURCES`):

=====================  ==============================================================
``synthetic``          random images in ``[0, 1)`` shaped for the model's first conv,
                       random multi-hot targets of the output's shape (no dataset)
``chexpert:ROOT``      the ``CheXpert-v1.0-small`` folder: the paper's 70 % training
                       split of ``train.csv``, labels under U-Ignore, 1 channel
``bbbc038:ROOT``       the BBBC038v1 folder: ``stage1_train`` images (3 channels, mean
                       0.5) with their merged nucleus masks
``folder:DIR``         ``DIR/<class>/<image>`` (:class:`explainfix.data.ImageFolderDataset`),
                       class indices as targets
``csv:FILE``           :class:`explainfix.data.CSVDataset`: a ``path`` column, and either a
                       ``mask`` column (segmentation) or label columns (every other column)
``nuclei-demo``        crops of the training region of one real DSB 2018 image (needs the
                       ``stardist==0.9.2`` wheel in ``.cache/wheels``: ``make test-data``)
=====================  ==============================================================

Real images are random ``--image-size`` crops (smaller images are zero-padded; padding
counts as background), drawn reproducibly from ``--seed`` without augmentation: the
saliency then sees the data as the model is trained on it, at a bounded memory cost, and
batches stack without padding. ``--batches`` batches of ``--batch-size`` are drawn (with
repetition only when the dataset is smaller), the same ones on every pass over the loader.
Images are read in the main process.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

__all__ = ["data_source", "parse_data_spec", "DATA_SOURCES", "DataRequest", "DataSource", "first_conv", "register_data_source"]


def first_conv(model: nn.Module) -> nn.modules.conv._ConvNd:
    """The model's first convolution (its input channels and dimensionality shape the data)."""
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return module
    raise ValueError(f"{type(model).__name__} has no convolution; cannot infer the input shape for --data")


@dataclass(frozen=True)
class DataRequest:
    """How much data a source should give.

    Attributes:
        batches: number of minibatches (the loader yields exactly this many).
        batch_size: images per minibatch.
        image_size: side of the (square / cubic) images or crops, or one size per spatial dim.
        seed: seeds the random images / crops, so a run is reproducible.
    """

    batches: int
    batch_size: int
    image_size: int | tuple[int, ...]
    seed: int


DataSource = Callable[[str, nn.Module, DataRequest], "tuple[Iterable, Callable | None]"]


def _spatial_size(request: DataRequest, dims: int) -> tuple[int, ...]:
    size = request.image_size
    if isinstance(size, int):
        return (size,) * dims
    if len(size) != dims:
        raise ValueError(f"image size {tuple(size)} does not fit a model with {dims}-d convolutions")
    return tuple(size)


def _synthetic(option: str, model: nn.Module, request: DataRequest):
    """Random images in ``[0, 1)`` and random multi-hot targets (no dataset needed)."""
    if option:
        raise ValueError(f"--data synthetic takes no option, got {option!r}")
    conv = first_conv(model)
    generator = torch.Generator().manual_seed(request.seed)
    shape = (request.batch_size, conv.in_channels, *_spatial_size(request, len(conv.kernel_size)))
    batches = [torch.rand(shape, generator=generator, dtype=conv.weight.dtype) for _ in range(request.batches)]

    def random_multi_hot(output: torch.Tensor, batch) -> torch.Tensor:
        return (torch.rand(output.shape, generator=generator) < 0.5).to(output.dtype)

    return batches, random_multi_hot


def _image_channels(model: nn.Module, source: str, fixed: int | None = None) -> int:
    """Input channels the data must have: the model's, checked against the dataset's ``fixed`` ones."""
    conv = first_conv(model)
    if len(conv.kernel_size) != 2:
        raise ValueError(f"--data {source} gives 2-d images, but the model's first conv is {len(conv.kernel_size)}-d")
    channels = conv.in_channels
    if fixed is not None and channels != fixed:
        raise ValueError(f"--data {source} gives {fixed}-channel images, but the model takes {channels} channels")
    if channels not in (1, 3):
        raise ValueError(f"--data {source} reads grey (1) or RGB (3) images; the model takes {channels} channels")
    return channels


class _SeededBatches:
    """``batches`` batches of ``dataset`` as ``(x, y)`` pairs, the same ones on every pass.

    Each pass builds the loader anew from the seed, so BatchNorm calibration, saliency and
    pruning that each iterate it see the same images, like a list of synthetic batches.
    """

    def __init__(self, dataset, request: DataRequest):
        from explainfix.data import as_xy

        self.dataset, self.request = as_xy(dataset), request

    def __len__(self) -> int:
        return self.request.batches

    def __iter__(self):
        from explainfix.data import make_loader

        r = self.request
        return iter(make_loader(self.dataset, r.batch_size, train=True, seed=r.seed,
                                num_samples=r.batches * r.batch_size, num_workers=0))


def _crop_loader(dataset, request: DataRequest):
    """``request.batches`` batches of ``dataset`` (whose transform crops), labels from the data."""
    return _SeededBatches(dataset, request), None


def _need_option(option: str, source: str, what: str) -> str:
    if not option:
        raise ValueError(f"--data {source} needs {what}: --data {source}:{what.upper()}")
    return option


def _chexpert(option: str, model: nn.Module, request: DataRequest):
    """The paper's CheXpert training split (70 % of train.csv), U-Ignore labels, 1 channel."""
    from explainfix.data import chexpert_splits

    root = _need_option(option, "chexpert", "root")
    _image_channels(model, "chexpert", fixed=1)
    return _crop_loader(chexpert_splits(root, crop_size=_spatial_size(request, 2)).train, request)


def _bbbc038(option: str, model: nn.Module, request: DataRequest):
    """BBBC038v1 ``stage1_train`` images (3 channels, mean 0.5) and merged nucleus masks."""
    from explainfix.data import BBBC038v1, RandomCrop

    root = _need_option(option, "bbbc038", "root")
    _image_channels(model, "bbbc038", fixed=3)
    return _crop_loader(BBBC038v1(root, "stage1_train", transform=RandomCrop(_spatial_size(request, 2))), request)


def _folder(option: str, model: nn.Module, request: DataRequest):
    """``DIR/<class>/<image>``, class indices as targets, channels as the model takes."""
    from explainfix.data import ImageFolderDataset, RandomCrop

    root = _need_option(option, "folder", "dir")
    channels = _image_channels(model, "folder")
    return _crop_loader(ImageFolderDataset(root, channels=channels, transform=RandomCrop(_spatial_size(request, 2))), request)


def _csv(option: str, model: nn.Module, request: DataRequest):
    """A CSV with a ``path`` column and a ``mask`` column or label columns (all the others)."""
    from explainfix.data import CSVDataset, RandomCrop
    from explainfix.data.folder import csv_target_columns

    csv_file = Path(_need_option(option, "csv", "file"))
    targets = csv_target_columns(csv_file)
    channels = _image_channels(model, "csv")
    dataset = CSVDataset(csv_file, channels=channels, transform=RandomCrop(_spatial_size(request, 2)), **targets)
    return _crop_loader(dataset, request)


def _nuclei_demo(option: str, model: nn.Module, request: DataRequest):
    """Crops of the training region of the bundled DSB 2018 image (3 channels, mean 0.5)."""
    from explainfix.data import RandomCrop
    from explainfix.data.nuclei_demo import TRAIN_COLUMNS, NucleiRegion, load_nuclei_image

    if option:
        raise ValueError(f"--data nuclei-demo takes no option, got {option!r}")
    _image_channels(model, "nuclei-demo", fixed=3)
    image, mask = load_nuclei_image()
    region = NucleiRegion(image, mask, TRAIN_COLUMNS, n=request.batches * request.batch_size,
                          transform=RandomCrop(_spatial_size(request, 2)))
    return _crop_loader(region, request)


#: ``--data NAME[:OPTION]`` -> function(option, model, request) -> (loader, target or None).
#: A loader of ``(x, y)`` pairs comes with target None (see :func:`explainfix.spatial_saliency`).
DATA_SOURCES: dict[str, DataSource] = {
    "synthetic": _synthetic,
    "chexpert": _chexpert,
    "bbbc038": _bbbc038,
    "folder": _folder,
    "csv": _csv,
    "nuclei-demo": _nuclei_demo,
}


def parse_data_spec(spec: str) -> tuple[DataSource, str]:
    """``NAME[:OPTION]`` -> (registered data source, option); ``ValueError`` for an unknown name."""
    name, _, option = spec.partition(":")
    source = DATA_SOURCES.get(name)
    if source is None:
        raise ValueError(f"unknown --data source {name!r}; choose one of {sorted(DATA_SOURCES)}")
    return source, option


def data_source(
    spec: str,
    model: nn.Module,
    *,
    batches: int,
    batch_size: int,
    image_size: int | Sequence[int],
    seed: int,
) -> tuple[Iterable, Callable | None]:
    """Data for saliency: ``(loader, target)`` from ``--data NAME[:OPTION]``.

    Args:
        spec: a source of :data:`DATA_SOURCES` with its option, e.g. ``"synthetic"``,
            ``"chexpert:data/CheXpert-v1.0-small"``, ``"folder:data/xrays"``.
        model: the model the data is for (its first conv gives channels and dimensionality).
        batches: minibatches the loader yields (exactly, so it can be passed without a limit).
        batch_size: images per minibatch.
        image_size: side of the random images / crops (or one size per spatial dim).
        seed: seeds images, crops and synthetic targets.

    Returns:
        ``(loader, target)``: ``target`` is ``None`` when the loader yields ``(x, y)`` pairs,
        otherwise a ``callable(output, batch) -> y`` (synthetic data).

    Raises:
        ValueError: unknown source, missing option, non-positive sizes, or data that does not
            fit the model's input. FileNotFoundError: a missing dataset folder or file.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
        >>> loader, target = data_source("synthetic", model, batches=2, batch_size=3, image_size=8, seed=0)
        >>> [tuple(x.shape) for x in loader]
        [(3, 1, 8, 8), (3, 1, 8, 8)]
    """
    source, option = parse_data_spec(spec)
    sizes = (image_size,) if isinstance(image_size, int) else tuple(image_size)
    if batches < 1 or batch_size < 1 or not sizes or min(sizes) < 1:
        raise ValueError("--batches, --batch-size and --image-size must be positive")
    size = image_size if isinstance(image_size, int) else tuple(int(s) for s in image_size)
    return source(option, model, DataRequest(int(batches), int(batch_size), size, int(seed)))


def register_data_source(name: str, source: DataSource) -> DataSource:
    """Add ``source(option, model, request) -> (loader, target or None)`` under ``name``."""
    if not name or ":" in name:
        raise ValueError(f"a data source name must be non-empty and hold no ':', got {name!r}")
    DATA_SOURCES[name] = source
    return source
