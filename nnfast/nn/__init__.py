"""Layers, activations and losses with explicit forward/backward (torch.nn names).

``MODULES`` maps every class name to its class (used by ``nnfast.io`` and the CLI),
``ACTIVATIONS`` maps activation names (``"relu"``) to modules and ``LOSSES`` loss names.
"""

from . import init
from .activation import (
    ACTIVATIONS,
    ELU,
    GELU,
    Arctan,
    BinaryStep,
    Identity,
    LeakyReLU,
    LogSoftmax,
    Maxout,
    PReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from .conv import AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, MaxPool2d
from .layers import BatchNorm1d, Dropout, Flatten, Linear
from .loss import LOSSES, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .module import (
    MODULES,
    Module,
    Parameter,
    Sequential,
    TorchModule,
    UnsupportedModuleError,
    register,
)
from .utils import clip_grad_norm_

__all__ = [
    "ACTIVATIONS",
    "ELU",
    "GELU",
    "LOSSES",
    "MODULES",
    "AdaptiveAvgPool2d",
    "Arctan",
    "AvgPool2d",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "BinaryStep",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "Identity",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "MaxPool2d",
    "Maxout",
    "Module",
    "PReLU",
    "Parameter",
    "ReLU",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
    "TorchModule",
    "UnsupportedModuleError",
    "clip_grad_norm_",
    "init",
    "register",
]
