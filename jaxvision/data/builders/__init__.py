"""Offline TFDS builders; importing this package registers them with TFDS."""

from jaxvision.data.builders.digits import Digits
from jaxvision.data.builders.shapes import Shapes
from jaxvision.data.builders.voc_segmentation import Voc2012Segmentation

__all__ = ["Digits", "Shapes", "Voc2012Segmentation"]
