"""Model registry and architectures.

``create_model(name, ...)`` builds any registered model: torchvision classifiers with an
``in_chans`` stem and a ``num_classes`` head (resnet, densenet, efficientnet, mobilenet)
and the paper's segmentation network ``unet_d``. ``register_model`` adds your own.

Example:
    >>> from explainfix.models import create_model, list_models
    >>> list_models("mobilenet*")
    ['mobilenet_v2', 'mobilenet_v3_large', 'mobilenet_v3_small']
"""
from __future__ import annotations

from .registry import create_model, list_models, register_model
from .torchvision_models import TORCHVISION_MODELS, adapt_stem_weight, load_pretrained
from .small_cnn import SmallCNN
from .unet_d import UNetD

__all__ = [
    "create_model",
    "list_models",
    "register_model",
    "UNetD",
    "SmallCNN",
    "TORCHVISION_MODELS",
    "adapt_stem_weight",
    "load_pretrained",
]
