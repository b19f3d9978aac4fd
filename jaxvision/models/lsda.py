"""LSDA (Hoffman et al. 2014, "LSDA: Large Scale Detection through Adaptation"): the arithmetic
that turns a classifier into a detector for classes that have no box annotations.

The classes are split into B (boxed: have box annotations) and A (label-only: image-level labels
only). A network trained to classify images over all classes has output-layer weight vectors
w^c_j (one per class). Fine-tuning it as a detector on region crops of the B classes (plus a
background class) gives new vectors w^d_i for i in B and adapts the layers below. The change
delta_i = w^d_i - w^c_i is what "classifier -> detector" means for class i; LSDA transfers it to
each label-only class j through its k nearest boxed classes in the classifier's weight space:

    w^d_j = w^c_j + (1/k) sum_{i in N_k(j)} delta_i,     N_k(j) = the k boxed i nearest to j by
                                                         || w^c_i - w^c_j ||_2.

The background output is the detector's own. A weight vector here is one column of the output
layer with its bias appended (kernel [D, K] and bias [K] -> [D + 1, K]): distances and offsets
use both. Ties in distance go to the lower class index. Pure numpy functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def check_split(class_names: Sequence[str], boxed: Sequence[str],
                label_only: Sequence[str]) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """Class indices (ascending) of the boxed and label-only splits of `class_names`.

  Raises ValueError for an empty split, an unknown or repeated class, a class in both splits, or
  a class in neither (the splits must partition the classes).
  """
  names = list(class_names)
  for arg, split in (("boxed", boxed), ("label_only", label_only)):
    if isinstance(split, str):
      raise ValueError(f"{arg}: expected a sequence of class names, got the string {split!r}")
    split = list(split)
    if not split:
      raise ValueError(f"{arg}: expected at least one class of {names}, got an empty split")
    unknown = [c for c in split if c not in names]
    if unknown:
      raise ValueError(f"{arg}: unknown class(es) {unknown}; expected names from {names}")
    repeated = sorted({c for c in split if split.count(c) > 1})
    if repeated:
      raise ValueError(f"{arg}: class(es) {repeated} listed more than once")
  both = sorted(set(boxed) & set(label_only))
  if both:
    raise ValueError(f"boxed, label_only: class(es) {both} are in both splits; each class is "
                     "either boxed or label-only")
  neither = [c for c in names if c not in boxed and c not in label_only]
  if neither:
    raise ValueError(f"boxed, label_only: class(es) {neither} are in neither split; expected the "
                     f"two splits to cover {names}")
  return (tuple(sorted(names.index(c) for c in boxed)),
          tuple(sorted(names.index(c) for c in label_only)))


def head_vectors(kernel, bias) -> np.ndarray:
  """One weight vector per output, [D + 1, K]: the Dense kernel [D, K] with its bias [K] below."""
  kernel, bias = np.asarray(kernel, np.float64), np.asarray(bias, np.float64)
  if kernel.ndim != 2 or bias.shape != kernel.shape[1:]:
    raise ValueError(f"kernel, bias: expected [D, K] and [K], got {kernel.shape} and {bias.shape}")
  return np.concatenate([kernel, bias[None]], axis=0)


def split_head(vectors) -> tuple[np.ndarray, np.ndarray]:
  """Inverse of `head_vectors`: (kernel [D, K], bias [K])."""
  vectors = np.asarray(vectors)
  return vectors[:-1], vectors[-1]


def nearest_boxed(classifier, boxed: Sequence[int], label_only: Sequence[int],
                  k: int) -> np.ndarray:
  """int [len(label_only), k]: for each label-only class, its k nearest boxed classes (class
  indices) by the L2 distance of the classifier's weight vectors `classifier` [D + 1, K]; nearest
  first, ties to the lower class index."""
  classifier = np.asarray(classifier, np.float64)
  boxed = np.sort(np.asarray(boxed, int))
  if not 1 <= k <= len(boxed):
    raise ValueError(f"k: expected 1 <= k <= {len(boxed)} (the boxed classes), got {k}")
  out = []
  for j in label_only:
    distance = np.linalg.norm(classifier[:, boxed] - classifier[:, [j]], axis=0)
    out.append(boxed[np.argsort(distance, kind="stable")[:k]])
  return np.array(out, int).reshape(len(label_only), k)


def transfer(classifier, detector, boxed: Sequence[int], label_only: Sequence[int],
             k: int) -> np.ndarray:
  """The LSDA detector's output-layer vectors [D + 1, K + 1] (K classes in order, background
  last).

  Args:
    classifier: [D + 1, K] the classifier's vectors (`head_vectors`), all K classes.
    detector: [D + 1, len(boxed) + 1] the fine-tuned detector's vectors: the boxed classes in
      ascending class order, then background.
    boxed, label_only: class indices of the two splits (`check_split`).
    k: nearest boxed classes averaged per label-only class.
  """
  classifier, detector = np.asarray(classifier, np.float64), np.asarray(detector, np.float64)
  boxed, label_only = np.sort(np.asarray(boxed, int)), np.asarray(label_only, int)
  d, num_classes = classifier.shape
  if detector.shape != (d, len(boxed) + 1):
    raise ValueError(f"detector: expected [D + 1, boxed + background] = ({d}, {len(boxed) + 1}), "
                     f"got {detector.shape}")
  out = np.zeros((d, num_classes + 1))
  out[:, boxed] = detector[:, :-1]
  out[:, -1] = detector[:, -1]
  delta = {int(i): detector[:, n] - classifier[:, i] for n, i in enumerate(boxed)}
  for j, near in zip(label_only, nearest_boxed(classifier, boxed, label_only, k)):
    out[:, j] = classifier[:, j] + np.mean([delta[int(i)] for i in near], axis=0)
  return out
