"""The run config of ``explainfix train``: one typed, validated description of a training run.

A config is YAML (or a dict) with these sections; every key has a default, so the smallest
config is ``{}`` (a few epochs of a small CNN on synthetic data)::

    data:     {source: bbbc038:data/BBBC038v1, image_size: 256, batch_size: 10}
    model:    {name: unet_d}                     # registered / torchvision name or checkpoint file
    arm:      {init: ghaar}                      # learned, or any fixed init (explainfix.list_inits())
    prune:    {ratio: 0.9}                       # optional ChannelPrune before training
    optim:    {name: adam, lr: 0.008}
    schedule: {name: constant}
    epochs: 300
    seed: 0

Dotted overrides (``--set optim.lr=0.02``) are parsed as YAML values. Unknown keys, wrong types
and out-of-range values raise :class:`ConfigError`, naming the key (with a did-you-mean).
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = ["TrainConfig", "ConfigError", "load_config", "apply_overrides", "config_hash", "ARMS_LEARNED"]

ARMS_LEARNED = "learned"


class ConfigError(ValueError):
    """A run config that cannot be used (unknown key, wrong type or value, bad override)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Where the images come from and how they are batched."""

    source: str = Field("synthetic", description="synthetic, synthetic:segment, chexpert:ROOT, bbbc038:ROOT, folder:DIR, csv:FILE, ...")
    image_size: int | None = Field(None, ge=4, description="training crop side (default: the dataset's, e.g. CheXpert 320)")
    batch_size: int | None = Field(None, ge=1, description="global training batch (default: the dataset's, e.g. CheXpert 4)")
    eval_batch_size: int | None = Field(None, ge=1)
    samples_per_epoch: int | None = Field(None, ge=1, description="images drawn per epoch (CheXpert: 15,000)")
    replacement: bool | None = Field(None, description="draw training images with replacement")
    val_fraction: float = Field(0.3, gt=0, lt=1, description="held-out share for folder / csv sources")
    val_samples: int | None = Field(None, ge=1, description="evaluate a fixed random subset of this many validation images per epoch")
    channels: int | None = Field(None, ge=1, description="image channels of folder / csv sources")
    workers: int = Field(0, ge=0, description="DataLoader worker processes")
    pin_memory: bool | None = None


class ModelConfig(_Section):
    """Which network: a registered name, a torchvision classifier or a checkpoint file."""

    name: str = "small_cnn"
    in_chans: int | None = Field(None, ge=1, description="default: the data's channels")
    num_classes: int | None = Field(None, ge=1, description="default: the data's outputs")
    pretrained: str | None = Field(None, description="local weights file (or 'torchvision' with internet)")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="architecture options of create_model")
    trust_checkpoint: bool = Field(False, description="allow unpickling checkpoints the config names (model.name, arm.guide)")


class ArmConfig(_Section):
    """Learned baseline, or spatial filters fixed at one of the registered initializations."""

    init: str = ARMS_LEARNED
    options: dict[str, Any] = Field(default_factory=dict, description="keyword options of the init")
    guide: str | None = Field(None, description="guided_steer: the guide model (name or checkpoint), or 'self': the model's own filters "
                                "before they are fixed (its pretrained weights, as in the paper)")
    calibrate_batchnorm: int = Field(0, ge=0, description="re-estimate BN statistics on this many batches after the init")


class PruneConfig(_Section):
    """ChannelPrune before training (steps 1-5 of the paper), off while ``ratio`` is None."""

    ratio: float | None = Field(None, ge=0, lt=1, description="share of spatial kernels to zero")
    scores: Literal["saliency", "weight"] = "saliency"
    batches: int = Field(15, ge=1, description="minibatches for the saliency (paper: 15 or 50)")
    mode: Literal["paper", "exact"] = "paper"
    fill: Literal["fillzero", "reset", "none"] = Field("fillzero", description="step 5: FillZero the remaining zeros")
    lr_multiplier: float = Field(2.0, gt=0, description="the paper doubles the learning rate of pruned models")


class OptimConfig(_Section):
    """The optimizer of the trainable (non-fixed) parameters."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD only")
    betas: tuple[float, float] = (0.9, 0.999)
    fused: bool | None = Field(None, description="fused Adam / SGD kernels (default: on CUDA)")


class ScheduleConfig(_Section):
    """Learning-rate schedule, stepped once per epoch."""

    name: Literal["constant", "cosine", "step", "onecycle"] = "constant"
    step_size: int = Field(30, ge=1, description="step: epochs between decays")
    gamma: float = Field(0.1, gt=0, description="step: decay factor")
    min_lr: float = Field(0.0, ge=0, description="cosine: final learning rate")
    warmup_epochs: int = Field(0, ge=0, description="linear warm-up epochs before the schedule")


class RuntimeConfig(_Section):
    """Where and how fast: device, precision, memory format, compilation."""

    device: str = Field("auto", description="auto (cuda > mps > cpu), cpu, cuda, cuda:1, ...")
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    compile: bool | Literal["default", "reduce-overhead", "max-autotune"] = Field(
        False, description="torch.compile the model (reduce-overhead captures CUDA graphs)")
    cudnn_benchmark: bool = True
    deterministic: bool = Field(False, description="torch.use_deterministic_algorithms")


class ExplainConfig(_Section):
    """ExplainSteer pictures of the trained model (Figs. 12 and G)."""

    enabled: bool = True
    batches: int = Field(4, ge=1, description="minibatches of training data for the saliency")


class TrainConfig(_Section):
    """A whole training run; see the module docstring for the YAML form."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    arm: ArmConfig = Field(default_factory=ArmConfig)
    prune: PruneConfig = Field(default_factory=PruneConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    epochs: int = Field(3, ge=1)
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cap on steps per epoch (smoke runs)")
    loss: Literal["auto", "chexpert_focal", "bce", "pixel_bce", "cross_entropy"] = "auto"
    test_every_epoch: bool = Field(False, description="also evaluate the test set after every epoch (test_* columns "
                                   "of metrics.csv, for per-epoch test curves as in Figs. 8, D.1); never picks the best epoch")
    monitor: str = Field("auto", description="validation metric that picks the best epoch (auto: dice / auc / accuracy)")
    monitor_mode: Literal["auto", "max", "min"] = "auto"
    seed: int = Field(0, ge=0)
    name: str | None = Field(None, description="a label for reports and sweeps")

    @field_validator("arm")
    @classmethod
    def _known_init(cls, arm: ArmConfig) -> ArmConfig:
        from explainfix.init import list_inits

        known = [ARMS_LEARNED, *list_inits()]
        if arm.init not in known:
            close = difflib.get_close_matches(arm.init, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown arm {arm.init!r}{hint} (choose one of {known})")
        if arm.init == "guided_steer" and not arm.guide:
            raise ValueError("arm guided_steer needs arm.guide: a model name or checkpoint whose filters guide it")
        return arm

    @model_validator(mode="after")
    def _coherent(self) -> "TrainConfig":
        if self.runtime.amp == "fp16" and self.runtime.device == "cpu":
            raise ValueError("runtime.amp fp16 needs a GPU; use bf16 on the CPU")
        return self

    @property
    def fixed(self) -> bool:
        """True for a spatially fixed arm."""
        return self.arm.init != ARMS_LEARNED

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


def _did_you_mean(model: type[BaseModel], loc: Sequence[Any]) -> str:
    """Close field names for an unknown key at ``loc`` (a pydantic error location)."""
    cls = model
    for part in loc[:-1]:
        field = cls.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        cls = annotation
    close = difflib.get_close_matches(str(loc[-1]), list(cls.model_fields), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else f" (known keys: {', '.join(cls.model_fields)})"


def _validate(raw: dict, what: str) -> TrainConfig:
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"]) or "(top level)"
            if e["type"] == "extra_forbidden":
                lines.append(f"unknown key {key!r}{_did_you_mean(TrainConfig, e['loc'])}")
            else:
                message = e["msg"].removeprefix("Value error, ")
                lines.append(f"{key}: {message} (got {e.get('input')!r})" if e["type"] != "value_error" else f"{key}: {message}")
        raise ConfigError(f"{what}: " + "; ".join(lines)) from None


def apply_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    """``raw`` with dotted ``key=value`` overrides applied (values parsed as YAML); a new dict."""
    out = json.loads(json.dumps(raw))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value, e.g. optim.lr=0.01")
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({err})") from None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = parsed
    return out


def load_config(source: str | os.PathLike | dict | TrainConfig | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """A validated :class:`TrainConfig` from a YAML file, a dict or a config, with overrides.

    Raises:
        ConfigError: unreadable YAML, unknown keys (with a did-you-mean), wrong types or values.
        FileNotFoundError: no such config file.
    """
    if isinstance(source, TrainConfig):
        raw, what = source.to_dict(), "config"
    elif source is None:
        raw, what = {}, "config"
    elif isinstance(source, dict):
        raw, what = source, "config"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {str(path)!r}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(raw).__name__}")
        what = str(path)
    return _validate(apply_overrides(raw, overrides), what)


def config_hash(config: TrainConfig) -> str:
    """A short stable hash of everything that changes a run's result (the config, less its name)."""
    data = config.to_dict()
    data.pop("name", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
