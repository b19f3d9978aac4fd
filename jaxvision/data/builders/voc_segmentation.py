"""TFDS builder `voc2012_segmentation`: PASCAL VOC 2012 semantic segmentation, from a manual download.

TFDS's `voc` builder holds boxes only; this one reads the segmentation part of the VOC 2012
devkit (1,464 train / 1,449 val images with `SegmentationClass` masks: 0 background, 1..20 the
classes, 255 object borders and "difficult" regions).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
           "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
           "sheep", "sofa", "train", "tvmonitor")
ARCHIVE = "VOCtrainval_11-May-2012.tar"

_DESCRIPTION = """\
PASCAL VOC 2012 semantic segmentation (Everingham et al.): images with per-pixel labels, 0 the
background, 1..20 the object classes, 255 borders and difficult regions (ignored).
"""


class Voc2012Segmentation(tfds.core.GeneratorBasedBuilder):
  """VOC 2012 segmentation masks; needs the devkit in the manual directory."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download {ARCHIVE} from http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ and place it (or the
VOCdevkit folder it contains) in the manual directory, by default
~/tensorflow_datasets/downloads/manual/.
"""

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=_DESCRIPTION,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "segmentation_mask": tfds.features.Image(shape=(None, None, 1)),
            "file_name": tfds.features.Text(),
        }),
        supervised_keys=("image", "segmentation_mask"),
        homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
    )

  def _split_generators(self, dl_manager):
    manual = dl_manager.manual_dir
    root = manual
    if (manual / ARCHIVE).exists():
      root = dl_manager.extract(manual / ARCHIVE)
    devkit = root / "VOCdevkit" / "VOC2012"
    if not devkit.exists():
      raise FileNotFoundError(f"manual_dir: expected {ARCHIVE} or VOCdevkit/VOC2012 in {manual}")
    lists = devkit / "ImageSets" / "Segmentation"
    return {"train": self._generate_examples(devkit, lists / "train.txt"),
            "validation": self._generate_examples(devkit, lists / "val.txt")}

  def _generate_examples(self, devkit, list_file):
    from PIL import Image  # matplotlib's dependency

    for name in list_file.read_text().split():
      with (devkit / "SegmentationClass" / f"{name}.png").open("rb") as f:
        mask = np.array(Image.open(f))  # palette indices: the class ids
      if mask.ndim != 2:
        raise ValueError(f"{name}.png: expected a palette (class index) PNG, got shape {mask.shape}")
      yield name, {"image": os.fspath(devkit / "JPEGImages" / f"{name}.jpg"),
                   "segmentation_mask": mask[..., None].astype(np.uint8),
                   "file_name": f"{name}.jpg"}
