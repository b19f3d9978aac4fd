"""Region proposals: Selective Search boxes, its grouping arithmetic, recall at K on hand-made
cases, the cached split proposals and the recall analysis on a tiny shapes build."""

import types

import numpy as np
import pytest

from jaxvision.analysis import proposal_recall as analysis
from jaxvision.metrics.proposal_recall import first_covering_rank, proposal_recall
from jaxvision.ops import selective_search as ss


def two_rectangles():
  """48x64 flat background with two flat rectangles: boxes (8, 5, 30, 20), (36, 25, 60, 45)."""
  image = np.empty((48, 64, 3), np.uint8)
  image[:] = (30, 60, 200)
  image[5:20, 8:30] = (220, 40, 40)
  image[25:45, 36:60] = (40, 200, 60)
  return image


@pytest.fixture(scope="module")
def rectangles_boxes():
  return ss.selective_search(two_rectangles())


def test_flat_rectangles_are_proposed_exactly(rectangles_boxes):
  rows = {tuple(b) for b in rectangles_boxes.tolist()}
  assert {(8, 5, 30, 20), (36, 25, 60, 45), (0, 0, 64, 48)} <= rows


def test_boxes_are_distinct_in_image_pixel_xyxy(rectangles_boxes):
  b = rectangles_boxes
  assert b.dtype == np.float32 and b.ndim == 2 and b.shape[1] == 4 and len(b) >= 3
  np.testing.assert_array_equal(b, np.round(b))
  assert np.all((b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 2] <= 64) & (b[:, 3] <= 48))
  assert np.all((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]))
  assert len(np.unique(b, axis=0)) == len(b)


def test_ranking_is_seeded_and_max_boxes_keeps_the_best(rectangles_boxes):
  image = two_rectangles()
  np.testing.assert_array_equal(ss.selective_search(image, seed=0), rectangles_boxes)
  np.testing.assert_array_equal(ss.selective_search(image, max_boxes=3), rectangles_boxes[:3])
  other = ss.selective_search(image, seed=1)
  assert not np.array_equal(other, rectangles_boxes)  # another order ...
  assert sorted(map(tuple, other.tolist())) == sorted(map(tuple, rectangles_boxes.tolist()))
  # float input in [0, 1] is the same image
  np.testing.assert_array_equal(ss.selective_search(image / 255.0), rectangles_boxes)


def test_grouping_merges_the_most_similar_neighbours_first():
  # Three vertical strips of a 4x10 image (widths 2, 3, 5); strip 0 has another colour.
  regions = types.SimpleNamespace(
      n=3, size=np.array([8.0, 12.0, 20.0]),
      boxes=np.array([[0, 0, 2, 4], [2, 0, 5, 4], [5, 0, 10, 4]], np.float64),
      colour=np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), texture=np.ones((3, 1)),
      pairs=np.array([[0, 1], [1, 2]]))
  # size + fill + texture: (0, 1): 0.5 + 1 + 1 = 2.5 > (1, 2): 0.2 + 1 + 1 = 2.2
  np.testing.assert_array_equal(ss._group(regions, 40.0, use_colour=False)[3:],
                                [[0, 0, 5, 4], [0, 0, 10, 4]])
  # + colour: (0, 1) stays 2.5 < (1, 2): 2.2 + 1 = 3.2
  np.testing.assert_array_equal(ss._group(regions, 40.0, use_colour=True),
                                [*regions.boxes, [2, 0, 10, 4], [0, 0, 10, 4]])


def test_proposals_for_images_pads_and_matches_single_images():
  flat = np.full((20, 30, 3), 90, np.uint8)  # one region: the whole image only
  boxes, valid = ss.proposals_for_images([two_rectangles(), flat], max_boxes=6, seed=3)
  assert boxes.shape == (2, 6, 4) and valid.shape == (2, 6)
  np.testing.assert_array_equal(boxes[0], ss.selective_search(two_rectangles(), max_boxes=6,
                                                              seed=3))
  np.testing.assert_array_equal(valid, [[True] * 6, [True] + [False] * 5])
  np.testing.assert_array_equal(boxes[1], [[0, 0, 30, 20]] + [[0, 0, 0, 0]] * 5)


@pytest.mark.parametrize("image, kwargs, match", [
    (np.zeros((8, 8), np.uint8), {}, "image: expected a non-empty RGB image"),
    (np.zeros((8, 8, 4), np.uint8), {}, r"image: .*\(8, 8, 4\)"),
    (np.zeros((0, 8, 3), np.uint8), {}, "image: expected a non-empty"),
    (np.zeros((8, 8, 3), np.int32), {}, "image: expected dtype uint8 .* got int32"),
    (np.full((8, 8, 3), 2.0), {}, r"image: .*\[0, 1\], got values in \[2.0, 2.0\]"),
    (np.zeros((8, 8, 3), np.uint8), {"max_boxes": 0}, "max_boxes: expected an int >= 1, got 0"),
    (np.zeros((8, 8, 3), np.uint8), {"scales": ()}, "scales: expected a non-empty"),
    (np.zeros((8, 8, 3), np.uint8), {"scales": (50, -1)}, "scales:"),
    (np.zeros((8, 8, 3), np.uint8), {"min_size": -1}, "min_size: expected an int >= 0"),
])
def test_selective_search_bad_input(image, kwargs, match):
  with pytest.raises(ValueError, match=match):
    ss.selective_search(image, **kwargs)


def test_proposals_for_images_bad_input():
  with pytest.raises(ValueError, match="processes: expected None or an int >= 1, got 0"):
    ss.proposals_for_images([two_rectangles()], max_boxes=5, processes=0)
  with pytest.raises(ValueError, match="max_boxes"):
    ss.proposals_for_images([two_rectangles()], max_boxes=0)


# Recall at K. Image 0: gt (0,0,10,10) hit by proposal rank 0; gt (20,20,30,30) only by rank 2
# with IoU exactly 0.7; a padded gt row and a padded proposal. Image 1: no ground truth.
# Image 2: gt (0,0,10,10); an invalid exact proposal first, then IoU exactly 0.5 (its rank 0).
PROPOSALS = np.array([
    [[0, 0, 10, 10], [40, 40, 50, 50], [20, 20, 30, 27], [20, 20, 30, 30]],
    [[0, 0, 5, 5], [1, 1, 6, 6], [0, 0, 0, 0], [0, 0, 0, 0]],
    [[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 10], [0, 0, 0, 0]],
], np.float32)
PROPOSAL_VALID = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [0, 1, 0, 0]], bool)
GT = np.array([
    [[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10]],
    [[0, 0, 5, 5], [0, 0, 0, 0], [0, 0, 0, 0]],
    [[0, 0, 10, 10], [0, 0, 0, 0], [0, 0, 0, 0]],
], np.float32)
GT_VALID = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 0]], bool)


def test_first_covering_rank_on_hand_made_boxes():
  ranks = first_covering_rank(PROPOSALS, PROPOSAL_VALID, GT, GT_VALID, (0.5, 0.7, 0.75))
  inf = np.inf
  np.testing.assert_array_equal(ranks, [
      [[0, 2, inf], [inf, inf, inf], [0, inf, inf]],
      [[0, 2, inf], [inf, inf, inf], [inf, inf, inf]],
      [[0, inf, inf], [inf, inf, inf], [inf, inf, inf]]])


def test_recall_at_k_on_hand_made_boxes():
  r = proposal_recall(PROPOSALS, PROPOSAL_VALID, GT, GT_VALID, ks=(1, 2, 3, 10),
                      iou_thresholds=(0.5, 0.7, 0.75))
  np.testing.assert_allclose(r["recall"], [[2 / 3, 2 / 3, 1, 1],
                                           [1 / 3, 1 / 3, 2 / 3, 2 / 3],
                                           [1 / 3, 1 / 3, 1 / 3, 1 / 3]], rtol=0, atol=1e-12)
  assert r["num_gt"] == 3 and r["mean_proposals"] == 2.0
  assert r["ks"] == (1, 2, 3, 10) and r["iou_thresholds"] == (0.5, 0.7, 0.75)


def test_recall_matches_a_brute_force_transcription():
  rng = np.random.default_rng(0)
  n, k, g = 5, 30, 4
  xy = rng.integers(0, 6, (n, k, 2))
  proposals = np.concatenate([xy, xy + rng.integers(2, 8, (n, k, 2))], -1).astype(np.float32)
  gxy = rng.integers(0, 6, (n, g, 2))
  gt = np.concatenate([gxy, gxy + rng.integers(3, 8, (n, g, 2))], -1).astype(np.float32)
  pvalid, gvalid = rng.random((n, k)) < 0.8, rng.random((n, g)) < 0.7
  ks, thresholds = (1, 3, 10, 30), (0.3, 0.5)
  want = np.zeros((2, 4))
  for t, threshold in enumerate(thresholds):
    for j, top in enumerate(ks):
      hits = []
      for i in range(n):
        mine = proposals[i][pvalid[i]][:top]
        for box in gt[i][gvalid[i]]:
          lo, hi = np.maximum(mine[:, :2], box[:2]), np.minimum(mine[:, 2:], box[2:])
          inter = np.prod(np.maximum(hi - lo, 0), -1)
          union = (np.prod(mine[:, 2:] - mine[:, :2], -1) + np.prod(box[2:] - box[:2]) - inter)
          hits.append(np.any(inter / union >= np.float32(threshold)))
      want[t, j] = np.mean(hits)
  got = proposal_recall(proposals, pvalid, gt, gvalid, ks=ks, iou_thresholds=thresholds)
  np.testing.assert_allclose(got["recall"], want, rtol=0, atol=1e-12)
  assert 0 < want.min() and len(np.unique(want)) >= 5  # a case with something to get wrong


def test_recall_without_ground_truth_is_nan():
  r = proposal_recall(PROPOSALS, PROPOSAL_VALID, GT, np.zeros_like(GT_VALID), ks=(1,))
  assert r["num_gt"] == 0 and np.isnan(r["recall"]).all() and r["recall"].shape == (2, 1)


@pytest.mark.parametrize("args, kwargs, match", [
    ((PROPOSALS[0], PROPOSAL_VALID, GT, GT_VALID), {}, r"proposals: expected \[N, K, 4\]"),
    ((PROPOSALS, PROPOSAL_VALID, GT[:2], GT_VALID), {}, r"gt_boxes: expected \[3, G, 4\]"),
    ((PROPOSALS, PROPOSAL_VALID[:, :2], GT, GT_VALID), {}, r"proposal_valid: expected bool"),
    ((PROPOSALS, PROPOSAL_VALID, GT, GT_VALID.astype(int)), {}, r"gt_valid: expected bool"),
    ((PROPOSALS, PROPOSAL_VALID, GT, GT_VALID), {"ks": (0, 10)}, "ks: expected"),
    ((PROPOSALS, PROPOSAL_VALID, GT, GT_VALID), {"iou_thresholds": (0.0,)}, "iou_thresholds:"),
])
def test_recall_bad_input(args, kwargs, match):
  with pytest.raises(ValueError, match=match):
    proposal_recall(*args, **kwargs)


def test_format_table():
  r = {"ks": (10, 100), "iou_thresholds": (0.5, 0.7), "recall": np.array([[0.5, 1.0],
                                                                        [0.25, 0.875]])}
  assert analysis.format_table(r) == ("| IoU | recall@10 | recall@100 |\n|---|---|---|\n"
                                      "| 0.5 | 0.500 | 1.000 |\n| 0.7 | 0.250 | 0.875 |")


# The cached split proposals, on a tiny shapes build.

@pytest.fixture(scope="module")
def tiny(tiny_shapes):
  from jaxvision.data import detection
  from jaxvision.data.builders.shapes import ShapesConfig

  config = ShapesConfig(name="proposals_test", image_size=32, num_train=3, num_test=4)
  data_dir, spec = tiny_shapes(config, "tiny_proposals")
  with pytest.MonkeyPatch.context() as m:
    m.setitem(detection.DATASETS, "tiny_proposals", spec)
    yield data_dir


def test_split_proposals_computes_then_loads_the_cache(tiny):
  import tensorflow_datasets as tfds

  from jaxvision.data.proposals import cache_path, split_proposals
  path = cache_path("tiny_proposals", "test", 50, tiny)
  assert not path.exists()
  made = split_proposals("tiny_proposals", "test", 50, tiny)
  assert path.exists() and not made["from_cache"]
  assert made["images"].shape == (4, 32, 32, 3) and made["images"].dtype == np.uint8
  assert made["boxes"].shape == (4, 8, 4) and made["proposals"].shape == (4, 50, 4)
  examples = list(tfds.as_numpy(tfds.load("shapes/proposals_test", split="test",
                                          data_dir=tiny)))
  for i, ex in enumerate(examples):
    np.testing.assert_array_equal(made["images"][i], ex["image"])
    count = len(ex["objects"]["label"])
    np.testing.assert_array_equal(made["gt_valid"][i], np.arange(8) < count)
    np.testing.assert_array_equal(made["classes"][i, :count], ex["objects"]["label"])
    np.testing.assert_allclose(made["boxes"][i, :count],
                               ex["objects"]["bbox"][:, [1, 0, 3, 2]] * 32, atol=1e-5)
  boxes, valid = ss.proposals_for_images(made["images"], max_boxes=50)
  np.testing.assert_array_equal(made["proposals"], boxes)
  np.testing.assert_array_equal(made["proposal_valid"], valid)
  loaded = split_proposals("tiny_proposals", "test", 50, tiny)
  assert loaded["from_cache"] and loaded["seconds_per_image"] == made["seconds_per_image"]
  for key in ("images", "boxes", "classes", "gt_valid", "proposals", "proposal_valid"):
    np.testing.assert_array_equal(loaded[key], made[key])
  with pytest.raises(ValueError, match="split: tiny_proposals has the splits 'train' and "
                                       "'test'; got 'validation'"):
    split_proposals("tiny_proposals", "validation", 50, tiny)


def test_split_proposals_limit_computes_only_the_first_images_until_cached(tiny):
  from jaxvision.data.proposals import cache_path, split_proposals
  path = cache_path("tiny_proposals", "train", 30, tiny)
  assert not path.exists()
  part = split_proposals("tiny_proposals", "train", 30, tiny, limit=2)
  assert not part["from_cache"] and not path.exists()  # a part of the split is never cached
  assert part["images"].shape[0] == 2 and part["proposals"].shape == (2, 30, 4)
  whole = split_proposals("tiny_proposals", "train", 30, tiny)
  assert whole["images"].shape[0] == 3 and path.exists()
  cached = split_proposals("tiny_proposals", "train", 30, tiny, limit=2)
  assert cached["from_cache"]
  for key in ("images", "boxes", "classes", "gt_valid", "proposals", "proposal_valid"):
    np.testing.assert_array_equal(part[key], whole[key][:2])
    np.testing.assert_array_equal(cached[key], whole[key][:2])
  with pytest.raises(ValueError, match="limit: expected an int >= 0"):
    split_proposals("tiny_proposals", "train", 30, tiny, limit=-1)


def test_analysis_prints_the_table_and_plots(tiny, tmp_path, capsys):
  out = tmp_path / "recall.png"
  analysis.main(["--dataset", "tiny_proposals", "--split", "train", "--max-boxes", "20",
                 "--data-dir", tiny, "--out", str(out)])
  text = capsys.readouterr().out
  assert "| IoU | recall@10 | recall@20 | recall@100 | recall@1000 |" in text
  assert "tiny_proposals train: 3 images" in text and "(measured now)" in text
  assert out.stat().st_size > 0


def test_normalise_uses_the_dataset_statistics():
  from jaxvision.data.detection import get_spec
  from jaxvision.data.proposals import normalise
  spec = get_spec("shapes_detection/64")
  mean = np.round(255 * np.asarray(spec.mean)).astype(np.uint8)
  images = np.stack([np.broadcast_to(mean, (2, 2, 3)), np.full((2, 2, 3), 255, np.uint8)])
  out = normalise(images, "shapes_detection/64")
  assert out.dtype == np.float32 and out.shape == (2, 2, 2, 3)
  expected = [(mean / 255 - np.asarray(spec.mean)) / spec.std,
              (1 - np.asarray(spec.mean)) / spec.std]
  for image, pixel in zip(out, expected):
    np.testing.assert_allclose(image, np.broadcast_to(pixel, (2, 2, 3)), rtol=1e-6, atol=1e-6)
