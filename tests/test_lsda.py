"""LSDA: the classifier-to-detector transfer on a hand-made case (exact numbers, nearest boxed
classes with ties), and the validation of the class splits."""

import numpy as np
import pytest

from jaxvision.models.lsda import (check_split, head_vectors, nearest_boxed, split_head,
                                   transfer)

# Four classes, D + 1 = 2. Classifier vectors: c0 (0, 0), c1 (2, 0), c2 (1, 0), c3 (5, 5).
CLASSIFIER = np.array([[0.0, 2.0, 1.0, 5.0],
                       [0.0, 0.0, 0.0, 5.0]])
# Detector fine-tuned on boxed classes 0, 1, 3 (+ background): d0 (1, 1), d1 (2, 4), d3 (5, 6),
# background (7, -7). Offsets: delta0 (1, 1), delta1 (0, 4), delta3 (0, 1).
DETECTOR = np.array([[1.0, 2.0, 5.0, 7.0],
                     [1.0, 4.0, 6.0, -7.0]])
BOXED, LABEL_ONLY = (0, 1, 3), (2,)


def test_nearest_boxed_breaks_ties_by_class_index():
  # c2 is at distance 1 from both c0 and c1 (a tie), sqrt(41) from c3.
  np.testing.assert_array_equal(nearest_boxed(CLASSIFIER, BOXED, LABEL_ONLY, 1), [[0]])
  np.testing.assert_array_equal(nearest_boxed(CLASSIFIER, (3, 1, 0), LABEL_ONLY, 2), [[0, 1]])
  np.testing.assert_array_equal(nearest_boxed(CLASSIFIER, BOXED, LABEL_ONLY, 3), [[0, 1, 3]])
  # Two label-only classes: c3's nearest boxed class is c1 (sqrt(34) < sqrt(50)).
  np.testing.assert_array_equal(nearest_boxed(CLASSIFIER, (0, 1), (2, 3), 1), [[0], [1]])
  with pytest.raises(ValueError, match=r"k: expected 1 <= k <= 3"):
    nearest_boxed(CLASSIFIER, BOXED, LABEL_ONLY, 4)


@pytest.mark.parametrize("k,expected", [(1, [2.0, 1.0]), (2, [1.5, 2.5]), (3, [4 / 3, 2.0])])
def test_transfer_exact(k, expected):
  out = transfer(CLASSIFIER, DETECTOR, BOXED, LABEL_ONLY, k)
  assert out.shape == (2, 5)
  np.testing.assert_allclose(out[:, 2], expected)  # c2 + mean of its neighbours' offsets
  # Boxed classes and background are the detector's own.
  np.testing.assert_array_equal(out[:, [0, 1, 3, 4]], DETECTOR)


def test_transfer_with_no_adaptation_is_the_classifier():
  same = np.concatenate([CLASSIFIER[:, BOXED], [[9.0], [9.0]]], axis=1)
  out = transfer(CLASSIFIER, same, BOXED, LABEL_ONLY, 2)
  np.testing.assert_array_equal(out[:, :4], CLASSIFIER)
  with pytest.raises(ValueError, match=r"detector: expected \[D \+ 1, boxed \+ background\]"):
    transfer(CLASSIFIER, DETECTOR[:, :3], BOXED, LABEL_ONLY, 1)


def test_head_vectors_round_trip():
  kernel, bias = np.arange(6.0).reshape(3, 2), np.array([10.0, 20.0])
  vectors = head_vectors(kernel, bias)
  np.testing.assert_array_equal(vectors, [[0, 1], [2, 3], [4, 5], [10, 20]])
  k, b = split_head(vectors)
  np.testing.assert_array_equal(k, kernel)
  np.testing.assert_array_equal(b, bias)
  with pytest.raises(ValueError, match="kernel, bias: expected"):
    head_vectors(kernel, bias[:1])


NAMES = ("circle", "square", "triangle")


def test_check_split():
  assert check_split(NAMES, ["square", "circle"], ["triangle"]) == ((0, 1), (2,))
  assert check_split(NAMES, ["triangle"], ["circle", "square"]) == ((2,), (0, 1))


@pytest.mark.parametrize("boxed,label_only,message", [
    (["circle", "square"], ["triangle", "square"], r"\['square'\] are in both splits"),
    (["circle", "hexagon"], ["triangle"], r"boxed: unknown class\(es\) \['hexagon'\]"),
    ([], ["circle", "square", "triangle"], "boxed: expected at least one class"),
    (["circle", "square", "triangle"], [], "label_only: expected at least one class"),
    (["circle", "circle"], ["triangle"], r"boxed: class\(es\) \['circle'\] listed more than once"),
    (["circle"], ["triangle"], r"\['square'\] are in neither split"),
    ("circle", ["triangle"], "boxed: expected a sequence of class names"),
])
def test_check_split_errors(boxed, label_only, message):
  with pytest.raises(ValueError, match=message):
    check_split(NAMES, boxed, label_only)


# ---- the analysis' region helpers (jaxvision.analysis.lsda_regions) ----

def test_training_regions_and_sampling():
  from jaxvision.analysis.lsda_regions import sample_batch, training_regions
  from jaxvision.ops import box_iou
  gt = np.array([[[10, 10, 30, 30], [0, 0, 0, 0]], [[0, 0, 0, 0], [0, 0, 0, 0]]], np.float32)
  valid = np.array([[True, False], [False, False]])
  regions = training_regions(gt, valid, 64, jittered=8, uniform=8, seed=0)
  assert regions.shape == (2, 16, 4) and regions.min() >= 0 and regions.max() <= 64
  assert (regions[..., 2:] > regions[..., :2]).all()
  assert (np.asarray(box_iou(regions[0, :8], gt[0, :1])) > 0.1).all()  # around the object
  labels = np.zeros((2, 16), np.int32)
  labels[0, :4] = 2
  rng = np.random.default_rng(0)
  fractions = []
  for _ in range(200):
    idx, boxes, y = sample_batch(rng, regions, labels, 2, 16)
    assert boxes.shape == (2, 16, 4) and sorted(idx) == [0, 1]
    for b, i in zip(boxes, idx):  # each sampled box is one of its image's regions
      assert all((regions[i] == r).all(-1).any() for r in b)
    fractions.append((y[idx == 0] > 0).mean())
    assert not (y[idx == 1] > 0).any()  # an image without objects gives background only
  assert 0.22 < np.mean(fractions) < 0.28  # R-CNN's 1/4 objects


def test_proposal_regions_and_padding_never_sampled():
  from jaxvision.analysis.lsda_regions import proposal_regions, sample_batch
  data = {"boxes": np.array([[[10, 10, 30, 30], [0, 0, 0, 0]]], np.float32),
          "gt_valid": np.array([[True, False]]),
          "proposals": np.array([[[12, 10, 30, 30], [40, 40, 60, 60], [0, 0, 0, 0]]], np.float32),
          "proposal_valid": np.array([[True, True, False]])}
  regions, valid = proposal_regions(data)
  np.testing.assert_array_equal(regions[0, [0, 2, 3]], [[10, 10, 30, 30], [12, 10, 30, 30],
                                                       [40, 40, 60, 60]])
  np.testing.assert_array_equal(valid, [[True, False, True, True, False]])
  labels = np.where(valid, np.array([[1, 0, 1, 0, 0]]), -1)
  rng = np.random.default_rng(0)
  picked = np.concatenate([sample_batch(rng, regions, labels, 1, 50)[2].ravel() for _ in range(20)])
  assert set(picked.tolist()) == {0, 1}  # objects and background, never the padding (-1)
  assert 0.2 < (picked > 0).mean() < 0.3


def test_evaluate_ranks_proposals_by_class():
  from jaxvision.analysis.lsda_regions import evaluate
  proposals = np.array([[[10, 10, 30, 30], [40, 40, 60, 60], [0, 0, 5, 5]]], np.float32)
  data = {"boxes": np.array([[[10, 10, 30, 30], [40, 40, 60, 60]]], np.float32),
          "classes": np.array([[0, 1]]), "gt_valid": np.array([[True, True]]),
          "difficult": np.zeros((1, 2), bool)}
  scores = np.array([[[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]])
  valid = np.array([[True, True, True]])
  ap = evaluate(scores, proposals, valid, data, 2, [0, 1])
  np.testing.assert_allclose(ap, [1.0, 1.0])
  # An invalid proposal is never a detection: the object it covered is missed.
  ap = evaluate(scores, proposals, np.array([[False, True, True]]), data, 2, [0])
  assert ap[0] == 0.0 and np.isnan(ap[1])


def test_region_labels_renumber_the_detectors_classes():
  from jaxvision.analysis.lsda_regions import region_labels
  data = {"boxes": np.array([[[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]]], np.float32),
          "classes": np.array([[0, 1, 2]]), "valid": np.array([[True, True, True]])}
  regions = np.array([[[0, 0, 10, 10], [21, 20, 30, 30], [40, 40, 50, 50], [0, 0, 64, 64],
                       [40, 40, 50, 50]]], np.float32)
  valid = np.array([[True, True, True, True, False]])
  # A detector of classes (2, 0): class 2 is label 1, class 0 label 2; class 1 is background.
  np.testing.assert_array_equal(region_labels(regions, valid, data, (2, 0)), [[2, 0, 1, 0, -1]])
  np.testing.assert_array_equal(region_labels(regions, valid, data, range(3)), [[1, 2, 3, 0, -1]])


def test_region_batches_are_warped_crops_pure_in_the_step():
  from jaxvision.analysis.lsda_regions import crop_batch, region_batches
  images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3)).astype(np.uint8)
  regions = np.tile(np.array([[0, 0, 16, 16], [0, 0, 8, 8], [8, 8, 16, 16]], np.float32), (3, 1, 1))
  labels = np.array([[1, 0, 0], [0, 2, 0], [0, 0, -1]])
  source = region_batches(images, regions, labels, crop=4, batch_images=2, per_image=4,
                          num_outputs=3, seed=0)
  later = next(source(7))
  stream = source(6)
  next(stream)
  for k, v in next(stream).items():  # step 7 whichever step the stream started at
    np.testing.assert_array_equal(v, later[k])
  assert later["image"].shape == (8, 4, 4, 3) and later["image"].dtype == np.float32
  assert set(later["label"].tolist()) <= {0, 1, 2}  # class 1 -> 0, 2 -> 1, background -> 2
  # The whole image warped to 16 x 16 is the image itself (raw pixels, aligned sampling).
  whole = crop_batch(images[:1], regions[:1, :1], labels[:1, :1], 16, 3)
  np.testing.assert_allclose(whole["image"][0], images[0], atol=1e-3)
  assert whole["label"].tolist() == [0]
