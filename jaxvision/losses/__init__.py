"""Losses."""

from jaxvision.losses.classification import cross_entropy, kernel_mask, l1_penalty

__all__ = ["cross_entropy", "kernel_mask", "l1_penalty"]
