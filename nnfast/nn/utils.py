"""Gradient clipping under torch's name ``torch.nn.utils``; defined in :mod:`nnfast.optim.clip`
(clipping acts on Parameter lists, as the optimizers do)."""

from ..optim.clip import clip_grad_norm_, grad_norm

__all__ = ["clip_grad_norm_", "grad_norm"]
