"""Fixed spatial initializations (Sec. 3.1): a registry and an in-place model initializer.

Methods: ``ones`` and ``dct2`` (not steered), ``unchanged``, ``ghaar``, ``psine`` and
``guided_steer`` (steered). Add your own with :func:`register_init`.

Example:
    >>> import torchvision
    >>> from explainfix import initialize, list_inits
    >>> list_inits()
    ['dct2', 'ghaar', 'guided_steer', 'ones', 'psine', 'unchanged']
    >>> report = initialize(torchvision.models.resnet18(), "psine", seed=0)
    >>> report.fixed
    True
"""
from explainfix.init import generated as _generated  # noqa: F401  (registers the methods)
from explainfix.init import guided_steer as _guided_steer  # noqa: F401
from explainfix.init.initialize import InitReport, initialize
from explainfix.init.registry import InitMethod, InitPlan, get_init, list_inits, register_init

__all__ = ["initialize", "InitReport", "InitPlan", "InitMethod", "list_inits", "get_init", "register_init"]
