"""Offline TFDS builders; importing this package registers them with TFDS."""

# Side effects first: no network for TFDS, quiet CPU-only TensorFlow.
from jaxvision.data import tfds_offline  # noqa: F401  isort: skip
from jaxvision.data.builders.clutter10 import Clutter10
from jaxvision.data.builders.digits import Digits
from jaxvision.data.builders.noise import Noise32
from jaxvision.data.builders.shapes import Shapes
from jaxvision.data.builders.voc_segmentation import Voc2012Segmentation

__all__ = ["Clutter10", "Digits", "Noise32", "Shapes", "Voc2012Segmentation"]
