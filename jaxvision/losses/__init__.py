"""Losses."""

from jaxvision.losses.classification import cross_entropy, kernel_mask, l1_penalty
from jaxvision.losses.multilabel import multi_hot, sigmoid_cross_entropy

__all__ = ["cross_entropy", "kernel_mask", "l1_penalty", "multi_hot", "sigmoid_cross_entropy"]
