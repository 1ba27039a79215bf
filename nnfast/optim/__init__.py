"""Optimizers and learning-rate schedulers (torch.optim names).

``OPTIMIZERS`` maps lower-case names (``"adam"``) to classes, ``SCHEDULERS`` class names.
"""

from .clip import clip_grad_norm_, grad_norm
from .lr_scheduler import (
    SCHEDULERS,
    CosineAnnealingLR,
    LinearLR,
    LinearWarmup,
    LRScheduler,
    ReduceLROnPlateau,
    StepLR,
)
from .optimizer import (
    OPTIMIZERS,
    SGD,
    Adagrad,
    Adam,
    AdamW,
    Optimizer,
    RMSprop,
    flatten_parameters,
)

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "LRScheduler",
    "LinearLR",
    "LinearWarmup",
    "Optimizer",
    "RMSprop",
    "ReduceLROnPlateau",
    "StepLR",
    "clip_grad_norm_",
    "flatten_parameters",
    "grad_norm",
]
