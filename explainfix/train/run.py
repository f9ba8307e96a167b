"""``train(config, out)``: one training run, from a validated config to ``result.json``.

What a run does, in order:

1. **Checks everything before any work**: the config, the output folder (a finished run is
   never overwritten unless asked; ``resume`` needs the same config), the data, the model
   (and its pretrained file), the guide model of GuidedSteer. Nothing is written on error.
2. **Builds the arm**: the model, its fixed spatial initialization (or none: ``learned``),
   optional BatchNorm re-calibration, optional ChannelPrune (saliency on training batches,
   then the optimizer is built on the pruned model with the paper's 2x learning rate).
3. **Trains** epoch by epoch with :class:`~explainfix.train.step.TrainStep`, evaluates the
   validation set, logs to ``metrics.csv`` / ``metrics.jsonl`` / TensorBoard, keeps the best
   epoch (``best.pt``) and writes ``checkpoint.pt`` atomically.
4. **Ends** with the test set evaluated by the best and the last model, the check that fixed
   weights are bit-identical to where they started, ExplainSteer pictures and ``result.json``.

Output folder::

    config.yaml      the resolved config          metrics.csv / metrics.jsonl  one row per epoch
    checkpoint.pt    training state (resume)      best.pt / last.pt            models (explainfix.load)
    result.json      final numbers and where they come from
    tb/              TensorBoard events           explain/                     ExplainSteer pictures
    prune_report.json / prune_report.txt          (pruned arms)
"""
from __future__ import annotations

import copy

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from explainfix.batches import batch_mask, split_batch
from explainfix.fileio import atomic_write

from .config import ConfigError, TrainConfig, config_hash, load_config
from .data import eval_loader, eval_subset, train_loader
from .distributed import Dist, setup_distributed
from .evaluate import default_monitor, evaluate, make_loss
from .state import fixed_digests, load_own_model, load_state, restore_rng, save_state
from .step import TrainStep, build_optimizer, trainable_parameters

__all__ = ["train", "TrainingInterrupted", "RunError", "build_arm", "Arm"]

STATE_FILE, RESULT_FILE = "checkpoint.pt", "result.json"


class RunError(ValueError):
    """A run that cannot start: bad output folder, data, model or resume request."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the last completed epoch's checkpoint is intact."""


# --------------------------------------------------------------------------- device
def resolve_device(name: str, dist: Dist | None = None) -> torch.device:
    """``auto`` -> cuda (this process's GPU under DDP) > mps > cpu; else ``torch.device(name)``."""
    local = dist.local_rank if dist is not None else 0
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"runtime.device: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"runtime.device {name!r}: CUDA is not available on this machine (use auto or cpu)")
    if device.type == "cuda" and device.index is None and dist is not None and dist.enabled:
        device = torch.device("cuda", local)
    return device


# --------------------------------------------------------------------------- the arm
@dataclass
class Arm:
    """The model of a run as it starts training, and how it got there."""

    model: nn.Module
    arch: dict | None
    init_report: Any = None
    prune_report: Any = None
    params: dict[str, int] = field(default_factory=dict)


def _build_model(config: TrainConfig, data) -> tuple[nn.Module, dict | None]:
    """The untrained network of ``config.model`` fitted to the data's channels and outputs."""
    from explainfix.models import create_model, list_models
    from explainfix.models.resolve import resolve_model

    m = config.model
    in_chans = m.in_chans or data.in_channels
    num_classes = m.num_classes or data.num_outputs
    if m.name in list_models():
        kwargs = {"in_chans": in_chans, "num_classes": num_classes, **m.kwargs}
        model = create_model(m.name, pretrained=m.pretrained, **kwargs)
        return model, {"name": m.name, "kwargs": kwargs}
    if m.pretrained is not None:
        raise ConfigError(f"model.pretrained needs a registered model (explainfix.list_models()), not {m.name!r}")
    if m.kwargs:
        raise ConfigError(f"model.kwargs needs a registered model (explainfix.list_models()), not {m.name!r}")
    kwargs = {"in_chans": m.in_chans, "num_classes": num_classes}
    if Path(m.name).is_file():
        model, arch = resolve_model(m.name, trust=m.trust_checkpoint)
    else:
        model, arch = resolve_model(m.name, in_chans=None if in_chans == 3 else in_chans, num_classes=num_classes)
    return model, arch


def _check_fits(model: nn.Module, data, config: TrainConfig) -> None:
    """The model takes the data's images and gives one output per task (checked on a tiny batch)."""
    from explainfix.batches import eval_mode, output_tensor

    item = data.train[0]
    x = item["image"].unsqueeze(0)
    try:
        with eval_mode(model, no_grad=True):
            out = output_tensor(model(x.to(next(model.parameters()).dtype)))
    except Exception as err:  # noqa: BLE001 - reported with what was tried
        raise RunError(f"model {config.model.name!r} cannot take the data's images of shape {tuple(x.shape)}: {err}") from err
    want = data.num_outputs
    if out.dim() < 2 or out.shape[1] != want:
        raise RunError(f"model {config.model.name!r} gives outputs of shape {tuple(out.shape)}; "
                       f"the data needs {want} output(s) per image ({data.task})")


def _count_params(model: nn.Module) -> dict[str, int]:
    from explainfix.spatial import spatial_convs

    spatial = {id(p) for _, conv in spatial_convs(model) for p in conv.parameters(recurse=False)}
    params = {id(p): p for p in model.parameters()}.values()
    return {
        "total": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
        "spatial": sum(p.numel() for p in params if id(p) in spatial),
        "spatial_fixed": sum(p.numel() for p in params if id(p) in spatial and not p.requires_grad),
    }


def _saliency_batches(data, config: TrainConfig, batch_size: int, n: int):
    """``n`` training batches (the same ones on every pass), for saliency and BatchNorm calibration."""
    return train_loader(data.train, batch_size=batch_size, seed=config.seed + 99_991, epoch=0, workers=0,
                        max_batches=n, num_samples=max(n * batch_size, 1), replacement=len(data.train) < n * batch_size)


def build_arm(config: TrainConfig, data, *, progress: bool = True) -> Arm:
    """The model of ``config`` before training: built, fixed (unless learned), optionally pruned.

    Raises:
        RunError / ConfigError / ValueError: a model that does not fit the data, a bad init
            option, a guide model without spatial convs, a pretrained file of another architecture.
    """
    from explainfix.init import initialize

    model, arch = _build_model(config, data)
    _check_fits(model, data, config)
    batch_size = config.data.batch_size or data.defaults.get("batch_size", 4)
    init_report = None
    if config.fixed:
        options = dict(config.arm.options)
        if config.arm.init == "guided_steer":
            options["guide"] = (copy.deepcopy(model) if config.arm.guide == "self"
                                else _guide_model(config.arm.guide, data, config))
        try:
            init_report = initialize(model, config.arm.init, seed=config.seed, **options)
        except TypeError as err:
            raise ConfigError(f"arm.options for {config.arm.init}: {err}") from None
        if config.arm.calibrate_batchnorm:
            from explainfix.init.batchnorm import calibrate_batchnorm

            calibrate_batchnorm(model, _saliency_batches(data, config, batch_size, config.arm.calibrate_batchnorm))
    prune_report = None
    if config.prune.ratio is not None:
        from explainfix.prune import channelprune, weight_scores

        p = config.prune
        kwargs: dict[str, Any] = {"mode": p.mode, "fill": p.fill, "seed": config.seed, "progress": progress}
        example = split_batch(next(iter(_saliency_batches(data, config, batch_size, 1))))[0]
        kwargs["example_inputs"] = (example,)
        if p.scores == "weight":
            kwargs["scores"] = weight_scores(model)
        else:
            kwargs["loader"] = _saliency_batches(data, config, batch_size, p.batches)
        prune_report = channelprune(model, p.ratio, **kwargs)
    return Arm(model, arch, init_report, prune_report, _count_params(model))


def _guide_model(spec: str, data, config: TrainConfig) -> nn.Module:
    from explainfix.models.resolve import resolve_model
    from explainfix.spatial import spatial_convs

    try:
        guide, _ = resolve_model(spec, trust=config.model.trust_checkpoint)
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(f"arm.guide: {err}") from None
    if not any(True for _ in spatial_convs(guide)):
        raise ConfigError(f"arm.guide {spec!r} has no spatial convolution to guide the filters with")
    return guide


# --------------------------------------------------------------------------- output folder
def _check_out(out: Path, config: TrainConfig, *, resume: bool, overwrite: bool) -> tuple[dict, nn.Module] | None:
    """Validate the output folder for this request; ``(checkpoint state, model)`` when resuming."""
    if out.exists() and not out.is_dir():
        raise RunError(f"output {str(out)!r} exists and is not a folder")
    probe = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    if not os.access(probe, os.W_OK):
        raise RunError(f"output folder {str(out)!r} is not writable")
    state_file, result_file = out / STATE_FILE, out / RESULT_FILE
    if resume:
        if not state_file.is_file():
            raise RunError(f"cannot resume: {state_file} does not exist (start the run without --resume)")
        state, model = load_state(state_file)
        if state.get("config_hash") != config_hash(config):
            raise RunError(f"cannot resume {out}: the config differs from the run's (compare {out / 'config.yaml'}); "
                           "resume with the same config, or start a new run in another folder")
        return state, model
    if overwrite:
        return None
    if result_file.is_file():
        raise RunError(f"{out} holds a finished run ({RESULT_FILE}); pass --overwrite to replace it or choose another --out")
    if state_file.is_file():
        raise RunError(f"{out} holds an unfinished run ({STATE_FILE}); pass --resume to continue it or --overwrite to start over")
    return None


class _Logger:
    """``metrics.csv``, ``metrics.jsonl`` and TensorBoard, rewritten from the history on resume."""

    def __init__(self, out: Path, history: list[dict], enabled: bool, tensorboard: bool = True):
        self.out, self.enabled, self.history = out, enabled, list(history)
        self.writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tb"), purge_step=len(history) + 1)
        if enabled:
            self._rewrite()

    def _rewrite(self) -> None:
        keys = list(dict.fromkeys(k for row in self.history for k in row))
        with atomic_write(self.out / "metrics.csv", "w") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.history)
        with atomic_write(self.out / "metrics.jsonl", "w") as f:
            for row in self.history:
                f.write(json.dumps(row) + "\n")

    def log(self, row: dict) -> None:
        self.history.append(row)
        if not self.enabled:
            return
        self._rewrite()
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _write_json(data: dict, path: Path) -> None:
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=1, default=str)


def _scheduler(optimizer, config: TrainConfig, steps_per_epoch: int):
    s, epochs = config.schedule, config.epochs
    if s.name == "constant":
        main = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)
    elif s.name == "cosine":
        main = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs - s.warmup_epochs), eta_min=s.min_lr)
    elif s.name == "step":
        main = torch.optim.lr_scheduler.StepLR(optimizer, step_size=s.step_size, gamma=s.gamma)
    else:  # onecycle, stepped per epoch
        main = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                                   total_steps=max(2, epochs))
    if s.warmup_epochs and s.name != "onecycle":
        warm = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / (s.warmup_epochs + 1), total_iters=s.warmup_epochs)
        return torch.optim.lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[s.warmup_epochs])
    return main


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def _better(value: float, best: float | None, mode: str) -> bool:
    if value is None or not math.isfinite(value):
        return False
    return best is None or (value > best if mode == "max" else value < best)


# --------------------------------------------------------------------------- the run
def train(
    config: TrainConfig | dict | str | os.PathLike | None = None,
    out: str | os.PathLike = "runs/train",
    *,
    overrides: list[str] | tuple[str, ...] = (),
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    data=None,
) -> dict:
    """Run (or resume) one training run; returns what ``result.json`` holds.

    Args:
        config: a :class:`TrainConfig`, a dict, a YAML file, or None (defaults).
        out: the run's output folder.
        overrides: dotted ``key=value`` strings applied to ``config``.
        resume: continue the run in ``out`` from its last completed epoch (same config).
        overwrite: replace a finished or unfinished run in ``out``.
        progress: tqdm progress bars.
        data: a :class:`~explainfix.data.training.TrainingData` to use instead of
            ``config.data.source`` (e.g. your own datasets from Python).

    Raises:
        ConfigError / RunError / FileNotFoundError: before any work or any file is written.
        TrainingInterrupted: Ctrl-C; the checkpoint of the last completed epoch is intact.

    Example:
        >>> result = train({"epochs": 1, "max_steps_per_epoch": 2}, "runs/doc", overwrite=True, progress=False)  # doctest: +SKIP
        >>> result["status"]  # doctest: +SKIP
        'finished'
    """
    from explainfix.data.training import training_data

    config = load_config(config, overrides)
    out = Path(out)
    if resume and overwrite:
        raise RunError("choose --resume or --overwrite, not both")
    resumed = _check_out(out, config, resume=resume, overwrite=overwrite)
    state = None if resumed is None else resumed[0]
    if data is None:
        data = training_data(config.data.source, image_size=config.data.image_size, seed=config.seed,
                             val_fraction=config.data.val_fraction, channels=config.data.channels)
    device = resolve_device(config.runtime.device)
    dist = setup_distributed(device)
    device = resolve_device(config.runtime.device, dist)
    torch.manual_seed(config.seed)
    if config.runtime.deterministic:
        torch.use_deterministic_algorithms(True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = config.runtime.cudnn_benchmark and not config.runtime.deterministic

    d = config.data
    batch_size = d.batch_size or data.defaults.get("batch_size", 4)
    eval_batch = d.eval_batch_size or data.defaults.get("eval_batch_size", batch_size)
    samples = d.samples_per_epoch or data.defaults.get("samples_per_epoch")
    replacement = d.replacement if d.replacement is not None else bool(data.defaults.get("replacement", False))
    if batch_size % dist.world_size:
        raise RunError(f"data.batch_size {batch_size} (the global batch) must be divisible by the {dist.world_size} processes")
    loss_fn, loss_name = make_loss(config.loss, data.task, data.train_labels)
    monitor, monitor_mode = default_monitor(data.task)
    if config.monitor != "auto":
        monitor = config.monitor
    if monitor.startswith("test_"):
        raise ConfigError(f"monitor {monitor!r} would pick the best epoch on the test set; monitor a val_ or train_ metric")
    if config.monitor_mode != "auto":
        monitor_mode = config.monitor_mode
    show = progress and dist.is_main

    # ---- the arm (before any file is written: every error so far left out untouched)
    if state is None:
        arm = build_arm(config, data, progress=show)
        model, arch, params = arm.model, arm.arch, arm.params
        digests = fixed_digests(model)
        prune_dict = arm.prune_report.to_dict() if arm.prune_report is not None else None
        prune_text = arm.prune_report.summary() if arm.prune_report is not None else None
        init_dict = _init_dict(arm.init_report)
    else:
        model = resumed[1]
        arch, params, digests = state["model"]["arch"], state["params"], state["fixed_digests"]
        prune_dict, init_dict = state.get("prune"), state.get("init")
        prune_text = None  # written when the run started
    lr = config.optim.lr * (config.prune.lr_multiplier if config.prune.ratio is not None else 1.0)

    model = model.to(device)
    if config.runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(trainable_parameters(model), config.optim.name, lr=lr,
                                weight_decay=config.optim.weight_decay, momentum=config.optim.momentum,
                                betas=config.optim.betas, fused=config.optim.fused)
    net: nn.Module = model
    if dist.enabled:
        if device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    step = TrainStep(net, optimizer, loss_fn, amp=config.runtime.amp, channels_last=config.runtime.channels_last,
                     compile=config.runtime.compile, device=device)
    scheduler = _scheduler(optimizer, config, 1)
    history, best, start_epoch = [], {"epoch": None, "value": None}, 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            step.scaler.load_state_dict(state["scaler"])
        history, best, start_epoch = state["history"], state["best"], int(state["epoch"])
        restore_rng(state["rng"])

    # ---- files: only now, and only rank 0
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if state is None:
            for stale in (RESULT_FILE, STATE_FILE, "best.pt", "last.pt"):
                (out / stale).unlink(missing_ok=True)
        with atomic_write(out / "config.yaml", "w") as f:
            yaml.safe_dump(config.to_dict(), f, sort_keys=False)
        if prune_text is not None:
            _write_json(prune_dict, out / "prune_report.json")
            with atomic_write(out / "prune_report.txt", "w") as f:
                f.write(prune_text + "\n")
    logger = _Logger(out, history, dist.is_main)
    val_indices = eval_subset(len(data.val), d.val_samples, config.seed) if data.val is not None else None
    pin = d.pin_memory if d.pin_memory is not None else device.type == "cuda"
    evaluate_kwargs = dict(task=data.task, loss_fn=loss_fn, device=device, task_names=data.task_names,
                           autocast=step.autocast, channels_last=config.runtime.channels_last,
                           gather=dist.gather if dist.enabled else None)

    epoch = start_epoch
    try:
        for epoch in range(start_epoch, config.epochs):
            loader = train_loader(data.train, batch_size=batch_size, seed=config.seed, epoch=epoch, num_samples=samples,
                                  replacement=replacement, workers=d.workers, pin_memory=pin, rank=dist.rank,
                                  world_size=dist.world_size, max_batches=config.max_steps_per_epoch)
            if len(loader) == 0:
                raise RunError(f"an epoch has no full batch: {len(data.train)} training images, batch size {batch_size}")
            net.train()
            losses, waited, images = [], 0.0, 0
            started = time.perf_counter()
            iterator = iter(loader)
            bar = _progress(range(len(loader)), len(loader), f"epoch {epoch + 1}/{config.epochs}", show)
            for _ in bar:
                t0 = time.perf_counter()
                batch = next(iterator)
                waited += time.perf_counter() - t0
                x, y = split_batch(batch)
                losses.append(step(x, y, batch_mask(batch)))
                images += x.shape[0] * dist.world_size
                if show and len(losses) % 10 == 0:
                    bar.set_postfix(loss=f"{float(losses[-1]):.4f}", img_s=f"{images / (time.perf_counter() - started):.1f}")
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - started
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                   "train_loss": dist.mean(float(torch.stack(losses).mean())),
                   "spe_s": dist.mean(seconds), "spe_compute_s": dist.mean(seconds - waited),
                   "images": images, "images_per_s": images / seconds}
            if data.val is not None:
                val = evaluate(net, eval_loader(data.val, batch_size=eval_batch, indices=val_indices, workers=d.workers,
                                                pin_memory=pin, rank=dist.rank, world_size=dist.world_size),
                               **evaluate_kwargs)
                row.update({f"val_{k}": v for k, v in val.items() if k != "n"})
            if config.test_every_epoch and data.test is not None:
                test = evaluate(net, eval_loader(data.test, batch_size=eval_batch, workers=d.workers, pin_memory=pin,
                                                 rank=dist.rank, world_size=dist.world_size), **evaluate_kwargs)
                row.update({f"test_{k}": v for k, v in test.items() if k != "n"})
            scheduler.step()
            value = row.get(monitor)
            # without a validation metric the best model is the latest one
            improved = value is None or _better(value, best["value"], monitor_mode)
            if improved:
                best = {"epoch": epoch + 1, "value": value}
            logger.log(row)
            if dist.is_main:
                from explainfix.checkpoint import save

                if improved:
                    save(model, out / "best.pt", arch=arch, meta={"epoch": epoch + 1, monitor: value})
                save_state(out / STATE_FILE, epoch=epoch + 1, model=model, arch=arch, optimizer=optimizer,
                           scheduler=scheduler, scaler=step.scaler, history=logger.history, best=best,
                           config=config.to_dict(), config_hash=config_hash(config), params=params,
                           fixed_digests=digests, prune=prune_dict, init=init_dict)
            dist.barrier()
            if show:
                shown = {k: f"{v:.4g}" for k, v in row.items() if k in ("train_loss", monitor, "spe_s")}
                print(f"epoch {epoch + 1}/{config.epochs}: " + ", ".join(f"{k} {v}" for k, v in shown.items()), flush=True)
    except KeyboardInterrupt:
        logger.close()
        raise TrainingInterrupted(
            f"interrupted in epoch {epoch + 1}; {out / STATE_FILE} holds epoch {epoch} - continue with --resume"
        ) from None
    logger.close()
    result = _finish(config, out, model, net, data, dist, evaluate_kwargs, eval_batch, pin, arch, params, digests,
                     best, monitor, monitor_mode, logger.history, prune_dict, init_dict, loss_name, show)
    dist.barrier()
    return result


def _init_dict(report) -> dict | None:
    if report is None:
        return None
    to_dict = getattr(report, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    from dataclasses import asdict, is_dataclass

    return asdict(report) if is_dataclass(report) else {"repr": repr(report)}


def _finish(config, out, model, net, data, dist, evaluate_kwargs, eval_batch, pin, arch, params, digests, best,
            monitor, monitor_mode, history, prune_dict, init_dict, loss_name, show) -> dict:
    """Fixed-weights check, test with the best and the last model, pictures, ``result.json``."""
    from explainfix.checkpoint import save

    now = fixed_digests(model)
    changed = sorted(n for n, d in digests.items() if now.get(n) != d)
    fixed_check = {"ok": not changed, "fixed_tensors": len(digests), "changed": changed,
                   "rule": "SHA-256 of every parameter with requires_grad=False, before vs after training"}
    if changed:
        raise RuntimeError(f"fixed weights changed during training: {changed[:5]} - please report this bug")
    test: dict[str, Any] | None = None
    if data.test is not None:
        test = {}
        dist.barrier()  # rank 0 wrote best.pt
        best_model = load_own_model(out / "best.pt").to(next(model.parameters()).device)
        for which, m in (("last", net), ("best", best_model)):
            metrics = evaluate(m, eval_loader(data.test, batch_size=eval_batch, workers=config.data.workers, pin_memory=pin,
                                              rank=dist.rank, world_size=dist.world_size), **evaluate_kwargs)
            test[which] = {k: v for k, v in metrics.items()}
    result = {
        "status": "finished",
        "name": config.name,
        "config_hash": config_hash(config),
        "arm": config.arm.init,
        "model": config.model.name,
        "data": {"source": config.data.source, "task": data.task, "description": data.description,
                 "warnings": data.warnings, "train_images": len(data.train),
                 "val_images": None if data.val is None else len(data.val),
                 "test_images": None if data.test is None else len(data.test)},
        "loss": loss_name,
        "epochs": len(history),
        "monitor": {"metric": monitor, "mode": monitor_mode, "best_epoch": best["epoch"], "best_value": best["value"]},
        "val_at_best": next((r for r in history if r["epoch"] == best["epoch"]), None),
        "val_last": history[-1] if history else None,
        "test": test,
        "where": {"val_at_best": "metrics.csv row of the best epoch (validation set)",
                  "val_last": "metrics.csv row of the last epoch",
                  "test.best": "test set, model of the best epoch (best.pt)",
                  "test.last": "test set, model after the last epoch (last.pt)"},
        "params": params,
        "fixed_check": fixed_check,
        "spe": {"mean_s": _mean(r["spe_s"] for r in history), "mean_compute_s": _mean(r["spe_compute_s"] for r in history),
                "note": "seconds per training epoch; compute excludes time blocked on the data loader"},
        "prune": prune_dict,
        "init": init_dict,
        "world_size": dist.world_size,
        "torch": torch.__version__,
        "device": str(next(model.parameters()).device),
    }
    if dist.is_main:
        save(model, out / "last.pt", arch=arch, meta={"epoch": len(history)})
        if config.explain.enabled:
            result["explain"] = _explain(model, data, config, out, show)
        _write_json(result, out / RESULT_FILE)
    return result


def _mean(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _explain(model: nn.Module, data, config: TrainConfig, out: Path, show: bool) -> dict:
    """ExplainSteer pictures of the trained model, with saliency on training batches."""
    from explainfix.explain import explainsteer
    from explainfix.explain.pictures import write_pictures
    from explainfix.spatial import spatial_convs

    if not any(True for _ in spatial_convs(model)):
        return {"skipped": "the model has no spatial convolution"}
    folder = out / "explain"
    folder.mkdir(exist_ok=True)
    batch_size = config.data.batch_size or data.defaults.get("batch_size", 4)
    batches = _saliency_batches(data, config, batch_size, config.explain.batches)
    uniform = explainsteer(model)
    salient = explainsteer(model, batches, max_batches=config.explain.batches, progress=show)
    _write_json({"without_saliency": uniform.to_dict(), "with_saliency": salient.to_dict()}, folder / "spectra.json")
    title = f"{config.model.name} ({config.arm.init}, trained)"
    written = write_pictures(uniform, salient, folder, title)
    return {"folder": str(folder), "files": [str(Path(p).relative_to(out)) for p in written] + ["explain/spectra.json"]}

