"""Losses: ``fprop(z, t)`` gives the batch mean, ``bprop()`` dL/dz divided by the batch size."""

from .base import Loss
from .bce_with_logits import BCEWithLogits
from .cross_entropy import CrossEntropy
from .hinge import Hinge
from .mse import MSE
from .softmax_cross_entropy import SoftmaxCrossEntropy

__all__ = ["Loss", "BCEWithLogits", "CrossEntropy", "Hinge", "MSE", "SoftmaxCrossEntropy"]
