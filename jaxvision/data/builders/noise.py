"""TFDS builder `noise32`: deterministic random 32x32x3 uint8 images with random labels.

A throughput fixture, not a learning task: the shape and dtype of CIFAR-10 through the real
pipeline (TFDS files, shuffle, crop, flip) with no download, for benchmarks of the training
loop against the bare step (bench/fit_overhead.py).
"""

import numpy as np
import tensorflow_datasets as tfds

SPLITS = {"train": 4096, "test": 512}
SEED = 0


class Noise32(tfds.core.GeneratorBasedBuilder):
  """Uniform uint8 noise images [32, 32, 3] and uniform labels in 10 classes; needs no download."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(32, 32, 3), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # generated
    return {name: self._generate_examples(index, n)
            for index, (name, n) in enumerate(SPLITS.items())}

  def _generate_examples(self, split_index: int, n: int):
    rs = np.random.RandomState([SEED, split_index])
    for i in range(n):
      yield i, {"image": rs.randint(0, 256, (32, 32, 3), dtype=np.uint8),
                "label": int(rs.randint(10))}
