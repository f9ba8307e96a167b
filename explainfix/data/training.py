"""A data spec ``NAME[:OPTION]`` as the train / validation / test sets of a training run.

:func:`training_data` is what ``explainfix train`` (``data.source`` of a run config) and the
experiments use. Every source gives item-dict datasets (see :mod:`explainfix.data`) with the
paper's augmentation on the training set, and says what kind of task it is, so the loop can
pick the loss and the metrics:

=====================  =============  =========================================================
source                 task           sets
=====================  =============  =========================================================
``synthetic``          multilabel     5 tasks; task *t* brightens horizontal band *t* of a noise
                                      image: learnable in a few hundred steps (no files needed)
``synthetic:segment``  segmentation   bright discs on noise, 3 channels, disc masks as targets
``chexpert:ROOT``      multilabel     the paper's 70 % / 30 % split of ``train.csv`` (seed 138),
                                      test = ``valid.csv``; random 320 x 320 crops, U-Ignore
``bbbc038:ROOT``       segmentation   train = ``stage1_train`` (crop, flips, noise), validation =
                                      ``stage1_test`` (in-distribution), test = ``stage2_test``
                                      (the 106 out-of-distribution images), each if present
``folder:DIR``         multiclass     ``DIR/<class>/<image>``, a seeded ``val_fraction`` split
``csv:FILE``           multilabel or  a ``path`` column and a ``mask`` column (segmentation) or
                       segmentation   label columns; a seeded ``val_fraction`` split
``nuclei-demo``        segmentation   one real DSB 2018 image (:mod:`explainfix.data.nuclei_demo`):
                                      128 x 128 crops of columns 0-351, held-out columns 384-511
=====================  =============  =========================================================

:func:`register_training_source` adds a source (e.g. the bundled nuclei image of the demo).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

from .loaders import ItemDataset, split_indices
from .transforms import RandomCrop, Transform, bbbc038_train_transform

__all__ = [
    "TASKS_KINDS",
    "TrainingData",
    "ItemSubset",
    "SyntheticBands",
    "SyntheticDiscs",
    "training_data",
    "register_training_source",
    "TRAINING_SOURCES",
]

#: the kinds of task a training source can be
TASKS_KINDS = ("multilabel", "multiclass", "segmentation")


@dataclass
class TrainingData:
    """The sets of a training run and what they hold.

    Attributes:
        train: training items (augmented; seeded keys make the augmentation reproducible).
        val: validation items for the per-epoch metrics (``None``: no validation).
        test: held-out items evaluated once at the end with the best and the last model.
        task: one of :data:`TASKS_KINDS`.
        in_channels: image channels.
        num_outputs: model outputs (tasks, classes or mask channels).
        task_names: names of the outputs (CheXpert's five pathologies, class names, ...).
        train_labels: ``(N, T)`` labels of the training set for class-balanced losses, or None.
        defaults: the paper's settings for this data (``batch_size``, ``eval_batch_size``,
            ``samples_per_epoch``, ``replacement``), used where a run config leaves them unset.
        description: one line for logs and reports.
        warnings: anything the user should know about this data (shown in the run's report).
    """

    train: Dataset
    val: Dataset | None
    test: Dataset | None
    task: str
    in_channels: int
    num_outputs: int
    task_names: tuple[str, ...] = ()
    train_labels: torch.Tensor | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.task not in TASKS_KINDS:
            raise ValueError(f"task must be one of {TASKS_KINDS}, got {self.task!r}")
        if len(self.train) == 0:
            raise ValueError(f"the training set of {self.description or 'this data'} holds no items")


class ItemSubset(ItemDataset):
    """Items ``indices`` of an item-dict ``dataset`` (read without its transform), with ``transform``.

    Seeded keys ``(index, seed)`` pass through, so augmentation stays reproducible.
    """

    def __init__(self, dataset: Dataset, indices: Sequence[int], transform: Transform | None = None):
        self.dataset, self.indices, self.transform = dataset, [int(i) for i in indices], transform

    def __len__(self) -> int:
        return len(self.indices)

    def _item(self, index: int) -> dict:
        return self.dataset[self.indices[index]]


class _Synthetic(ItemDataset):
    """Items that are a pure function of ``(seed, offset + index)``: the same on every machine."""

    def __init__(self, n: int, size: int, channels: int, seed: int, offset: int, transform: Transform | None):
        if n < 1 or size < 4 or channels < 1:
            raise ValueError(f"synthetic data needs n >= 1, size >= 4 and channels >= 1; got {n}, {size}, {channels}")
        self.n, self.size, self.channels, self.seed, self.offset, self.transform = n, size, channels, seed, offset, transform

    def __len__(self) -> int:
        return self.n

    def _generator(self, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.offset + index)


class SyntheticBands(_Synthetic):
    """Multi-label images: label *t* adds 0.35 to horizontal band *t* of a uniform-noise image."""

    def __init__(self, n: int = 256, size: int = 32, channels: int = 1, tasks: int = 5, *, seed: int = 0,
                 offset: int = 0, transform: Transform | None = None):
        super().__init__(n, size, channels, seed, offset, transform)
        if not 1 <= tasks <= size:
            raise ValueError(f"tasks must lie in [1, size={size}], got {tasks}")
        self.tasks = tasks

    def labels(self) -> torch.Tensor:
        return torch.stack([self._item(i)["target"] for i in range(len(self))])

    def _item(self, index: int) -> dict:
        g = self._generator(index)
        labels = (torch.rand(self.tasks, generator=g) < 0.5).float()
        image = 0.6 * torch.rand(self.channels, self.size, self.size, generator=g)
        edges = [round(t * self.size / self.tasks) for t in range(self.tasks + 1)]
        for t in range(self.tasks):
            image[:, edges[t]:edges[t + 1]] += 0.35 * labels[t]
        return {"image": image.clamp_(0, 1), "target": labels, "target_mask": torch.ones(self.tasks, dtype=torch.bool),
                "meta": {"index": self.offset + index}}


class SyntheticDiscs(_Synthetic):
    """Segmentation images: 2-5 bright discs on noise, their union as the ``(1, H, W)`` mask."""

    def __init__(self, n: int = 64, size: int = 64, channels: int = 3, *, seed: int = 0, offset: int = 0,
                 transform: Transform | None = None):
        super().__init__(n, size, channels, seed, offset, transform)

    def _item(self, index: int) -> dict:
        g = self._generator(index)
        s = self.size
        yy, xx = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32), indexing="ij")
        mask = torch.zeros(s, s, dtype=torch.bool)
        for _ in range(int(torch.randint(2, 6, (1,), generator=g))):
            cy, cx = (torch.rand(2, generator=g) * s).tolist()
            r = float(s * (0.06 + 0.1 * torch.rand(1, generator=g)))
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        noise = torch.rand(self.channels, s, s, generator=g)
        image = (0.25 + 0.45 * mask.float()).expand(self.channels, s, s) + 0.3 * (noise - 0.5)
        target = mask.float().unsqueeze(0)
        return {"image": image.clamp(0, 1), "target": target, "target_mask": torch.ones_like(target, dtype=torch.bool),
                "meta": {"index": self.offset + index}}


def _size(image_size: int | None, default: int) -> int:
    size = default if image_size is None else int(image_size)
    if size < 4:
        raise ValueError(f"data.image_size must be >= 4, got {size}")
    return size


def _synthetic(option: str, *, image_size: int | None, seed: int, val_fraction: float, **_) -> TrainingData:
    if option in ("", "multilabel"):
        size = _size(image_size, 32)
        train = SyntheticBands(256, size, seed=seed, offset=0)
        val = SyntheticBands(64, size, seed=seed, offset=10_000)
        test = SyntheticBands(64, size, seed=seed, offset=20_000)
        return TrainingData(train, val, test, "multilabel", 1, 5, tuple(f"band{t}" for t in range(5)),
                            train_labels=train.labels(), defaults={"batch_size": 8, "eval_batch_size": 16},
                            description=f"synthetic multi-label bands, {size}x{size}, 256/64/64 images")
    if option in ("segment", "segmentation"):
        size = _size(image_size, 48)
        return TrainingData(SyntheticDiscs(64, size, seed=seed, offset=0), SyntheticDiscs(16, size, seed=seed, offset=10_000),
                            SyntheticDiscs(16, size, seed=seed, offset=20_000), "segmentation", 3, 1, ("foreground",),
                            defaults={"batch_size": 4, "eval_batch_size": 4},
                            description=f"synthetic discs (segmentation), {size}x{size}, 64/16/16 images")
    raise ValueError(f"synthetic takes no option or 'segment', got {option!r}")


def _need_root(option: str, source: str) -> Path:
    if not option:
        raise ValueError(f"data source {source} needs a folder: {source}:ROOT")
    root = Path(option).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data source {source}: no such folder {str(root)!r}")
    return root


def _chexpert(option: str, *, image_size: int | None, seed: int, val_fraction: float, **_) -> TrainingData:
    from .chexpert import TASKS, chexpert_splits

    root = _need_root(option, "chexpert")
    splits = chexpert_splits(root, crop_size=_size(image_size, 320))
    warnings = [] if splits.test is not None else [f"{root}/valid.csv not found: no test set"]
    return TrainingData(splits.train, splits.val, splits.test, "multilabel", 1, len(TASKS), tuple(TASKS),
                        train_labels=splits.train.targets,
                        defaults={"batch_size": 4, "eval_batch_size": 4, "samples_per_epoch": 15_000, "replacement": True},
                        description=f"CheXpert {root} ({len(splits.train)} / {len(splits.val)} / "
                                    f"{0 if splits.test is None else len(splits.test)} images)", warnings=warnings)


def _bbbc038(option: str, *, image_size: int | None, seed: int, val_fraction: float, **_) -> TrainingData:
    from .bbbc038 import BBBC038_SPLITS, BBBC038v1

    root = _need_root(option, "bbbc038")
    train = BBBC038v1(root, "stage1_train", transform=bbbc038_train_transform(_size(image_size, 256)))
    sets, warnings = {}, []
    for name in ("stage1_test", "stage2_test"):
        folder, csv = BBBC038_SPLITS[name]
        if (root / folder).is_dir() and (root / csv).is_file():
            sets[name] = BBBC038v1(root, name)
        else:
            warnings.append(f"{root / folder} or {root / csv} not found: no {name} set")
    return TrainingData(train, sets.get("stage1_test"), sets.get("stage2_test"), "segmentation", 3, 1, ("nucleus",),
                        defaults={"batch_size": 10, "eval_batch_size": 1},
                        description=f"BBBC038v1 {root} ({len(train)} training images)", warnings=warnings)


def _split(dataset: Dataset, val_fraction: float, seed: int, transform: Transform) -> tuple[ItemSubset, ItemSubset]:
    if len(dataset) < 2:
        raise ValueError(f"need at least 2 images to split off a validation set, found {len(dataset)}")
    train_idx, val_idx = split_indices(len(dataset), 1.0 - val_fraction, seed)
    if not train_idx or not val_idx:
        raise ValueError(f"val_fraction={val_fraction} leaves an empty split of {len(dataset)} images")
    return ItemSubset(dataset, train_idx, transform), ItemSubset(dataset, val_idx)


def _folder(option: str, *, image_size: int | None, seed: int, val_fraction: float, channels: int = 1, **_) -> TrainingData:
    from .folder import ImageFolderDataset

    root = _need_root(option, "folder")
    full = ImageFolderDataset(root, channels=channels)
    if len(full) == 0:
        raise ValueError(f"data source folder:{root} holds no images")
    train, val = _split(full, val_fraction, seed, RandomCrop(_size(image_size, 224)))
    classes = tuple(getattr(full, "classes", ()))
    return TrainingData(train, val, None, "multiclass", channels, len(classes), classes,
                        defaults={"batch_size": 8, "eval_batch_size": 8},
                        description=f"image folder {root} ({len(full)} images, {len(classes)} classes)")


def _csv(option: str, *, image_size: int | None, seed: int, val_fraction: float, channels: int = 1, **_) -> TrainingData:
    from .folder import CSVDataset, csv_target_columns

    if not option:
        raise ValueError("data source csv needs a file: csv:FILE")
    csv_file = Path(option).expanduser()
    targets = csv_target_columns(csv_file)
    full = CSVDataset(csv_file, channels=channels, **targets)
    if "mask_column" in targets:
        task, names = "segmentation", ("mask",)
    else:
        task, names = "multilabel", tuple(targets["label_columns"])
    if len(full) == 0:
        raise ValueError(f"{csv_file} lists no images")
    train, val = _split(full, val_fraction, seed, RandomCrop(_size(image_size, 224)))
    return TrainingData(train, val, None, task, channels, 1 if task == "segmentation" else len(names), names,
                        defaults={"batch_size": 8, "eval_batch_size": 1 if task == "segmentation" else 8},
                        description=f"CSV {csv_file} ({len(full)} images, {task})")


def _nuclei_demo(option: str, *, image_size: int | None, seed: int, val_fraction: float, **_) -> TrainingData:
    from .nuclei_demo import HELD_OUT_COLUMNS, TRAIN_COLUMNS, NucleiImageMissing, held_out_region, load_nuclei_image, training_region

    if option:
        raise ValueError(f"nuclei-demo takes no option, got {option!r}")
    try:
        image, mask = load_nuclei_image()
    except NucleiImageMissing as err:
        data = _synthetic("segment", image_size=image_size, seed=seed, val_fraction=val_fraction)
        data.warnings.append(f"the real nuclei image is missing ({err}); SYNTHETIC discs were used instead")
        data.description = "FALLBACK " + data.description
        return data
    size = _size(image_size, 128)
    held_out = held_out_region(image, mask)
    return TrainingData(training_region(image, mask, crops=32, size=size), held_out, held_out, "segmentation", 3, 1,
                        ("nucleus",), defaults={"batch_size": 8, "eval_batch_size": 1},
                        description=f"one real DSB 2018 image (512x512, 125 nuclei): training columns "
                                    f"{TRAIN_COLUMNS[0]}-{TRAIN_COLUMNS[1] - 1} ({size}x{size} crops), held-out columns "
                                    f"{HELD_OUT_COLUMNS[0]}-{HELD_OUT_COLUMNS[1] - 1}")


TrainingSource = Callable[..., TrainingData]

#: data source name -> ``source(option, *, image_size, seed, val_fraction, channels) -> TrainingData``
TRAINING_SOURCES: dict[str, TrainingSource] = {
    "synthetic": _synthetic,
    "chexpert": _chexpert,
    "bbbc038": _bbbc038,
    "folder": _folder,
    "csv": _csv,
    "nuclei-demo": _nuclei_demo,
}


def register_training_source(name: str, source: TrainingSource) -> TrainingSource:
    """Add ``source(option, *, image_size, seed, val_fraction, **options) -> TrainingData`` under ``name``."""
    if not name or ":" in name:
        raise ValueError(f"a data source name must be non-empty and hold no ':', got {name!r}")
    TRAINING_SOURCES[name] = source
    return source


def training_data(
    spec: str,
    *,
    image_size: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.3,
    channels: int | None = None,
) -> TrainingData:
    """The sets of a training run from ``NAME[:OPTION]`` (see the table above).

    Args:
        spec: e.g. ``"synthetic"``, ``"chexpert:data/CheXpert-v1.0-small"``, ``"bbbc038:data/BBBC038v1"``.
        image_size: side of the training crops (default: the source's, e.g. 320 for CheXpert).
        seed: seeds splits that are not fixed by the paper (folder / csv) and synthetic images.
        val_fraction: share of images held out for validation by folder / csv sources.
        channels: image channels for folder / csv sources (default 1).

    Raises:
        ValueError: unknown source (naming the known ones), bad option, or data with no images.
        FileNotFoundError: the dataset folder or file does not exist.
    """
    name, _, option = spec.partition(":")
    source = TRAINING_SOURCES.get(name)
    if source is None:
        import difflib

        close = difflib.get_close_matches(name, list(TRAINING_SOURCES), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown data source {name!r}{hint} (choose one of {sorted(TRAINING_SOURCES)})")
    if not 0.0 < val_fraction < 1.0 or math.isnan(val_fraction):
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    kwargs: dict[str, Any] = {"image_size": image_size, "seed": int(seed), "val_fraction": float(val_fraction)}
    if channels is not None:
        kwargs["channels"] = int(channels)
    return source(option, **kwargs)

