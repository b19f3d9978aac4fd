"""TFDS builder `digits`: scikit-learn's 8x8 handwritten digits, prepared offline."""

import numpy as np
from sklearn import datasets as sk_datasets
from sklearn import model_selection
import tensorflow_datasets as tfds

_DESCRIPTION = """\
The UCI ML handwritten digits (1797 grey 8x8 images, 10 classes) shipped with
scikit-learn. Pixel values 0..16 are scaled to 0..255 as round(v * 255 / 16).
Fixed stratified split: 1437 train / 360 test (test_size=0.2, random_state=0).
"""

_CITATION = """\
@misc{uci_digits,
  author = {Alpaydin, E. and Kaynak, C.},
  title = {Optical Recognition of Handwritten Digits},
  year = {1998},
  howpublished = {UCI Machine Learning Repository},
}
"""

TEST_SIZE = 0.2
SPLIT_SEED = 0


def load_split() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Returns {split: (images uint8 [N,8,8,1], labels int64 [N], sklearn indices [N])}."""
  digits = sk_datasets.load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int64)
  train_idx, test_idx = model_selection.train_test_split(
      np.arange(len(labels)), test_size=TEST_SIZE, random_state=SPLIT_SEED,
      stratify=labels)
  return {name: (images[idx], labels[idx], idx)
          for name, idx in (("train", train_idx), ("test", test_idx))}


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn digits as a TFDS dataset; needs no download."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=_DESCRIPTION,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html",
        citation=_CITATION,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything ships with scikit-learn.
    return {name: self._generate_examples(*arrays)
            for name, arrays in load_split().items()}

  def _generate_examples(self, images, labels, indices):
    for image, label, index in zip(images, labels, indices):
      yield int(index), {"image": image, "label": int(label)}
