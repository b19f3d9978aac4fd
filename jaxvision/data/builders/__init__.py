"""Offline TFDS builders; importing this package registers them with TFDS."""

from jaxvision.data.builders.digits import Digits

__all__ = ["Digits"]
