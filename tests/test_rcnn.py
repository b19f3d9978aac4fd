"""R-CNN and SPP-net: crop-and-warp geometry, the SPP window mapping and bins on hand-made maps,
tiny forward passes, the per-class regression targets, and proposal edge cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.losses import rcnn as L
from jaxvision.models import create_model, model_options
from jaxvision.models import rcnn as R
from jaxvision.models.roi_heads import BOX_WEIGHTS
from jaxvision.ops import decode_boxes, encode_boxes
from jaxvision.ops.spp import project_windows, spatial_pyramid_pool

# --- crop and warp ---------------------------------------------------------------------------


def _ramp(h=40, w=40):
  """I[y, x] = (x, 2y, x + 3y + 1): bilinear interpolation reproduces it exactly inside."""
  y, x = np.mgrid[0:h, 0:w].astype(np.float32)
  return np.stack([x, 2 * y, x + 3 * y + 1], -1)[None]


def _expected_warp(box, size):
  x1, y1, x2, y2 = box
  t = (np.arange(size) + 0.5) / size
  xs = x1 + t * (x2 - x1) - 0.5  # pixel centres at half-integers
  ys = y1 + t * (y2 - y1) - 0.5
  yy, xx = np.meshgrid(ys, xs, indexing="ij")
  return np.stack([xx, 2 * yy, xx + 3 * yy + 1], -1)


def test_warp_of_a_ramp_image_is_the_ramp_at_the_sample_points():
  boxes = np.array([[[10.0, 6.0, 26.0, 30.0], [3.0, 2.0, 7.0, 5.0]]], np.float32)
  out = np.asarray(R.warp_regions(_ramp(), boxes, 8))
  assert out.shape == (1, 2, 8, 8, 3)
  for k in range(2):
    np.testing.assert_allclose(out[0, k], _expected_warp(boxes[0, k], 8), atol=1e-4)
  # First output pixel of box 0: x = 10 + 0.5 * 16 / 8 - 0.5 = 10.5, y = 6 + 1.5 - 0.5 = 7.
  np.testing.assert_allclose(out[0, 0, 0, 0], [10.5, 14.0, 32.5], atol=1e-5)


def test_context_padding_dilates_the_box_as_the_paper():
  # Warped to 8 with 2 pixels of context: the box fills the inner 4, so it grows 8 / 4 = 2x.
  np.testing.assert_allclose(R.dilate_boxes(jnp.array([14.0, 12.0, 22.0, 24.0]), 8, 2),
                             [10.0, 6.0, 26.0, 30.0])
  box = np.array([[[14.0, 12.0, 22.0, 24.0]]], np.float32)
  out = np.asarray(R.warp_regions(_ramp(), box, 8, context_padding=2))
  np.testing.assert_allclose(out[0, 0], _expected_warp([10.0, 6.0, 26.0, 30.0], 8), atol=1e-4)


def test_warp_beyond_the_image_is_zero_and_bad_sizes_are_rejected():
  out = R.warp_regions(_ramp(), jnp.array([[[-30.0, -30.0, -10.0, -10.0]]]), 4)
  np.testing.assert_array_equal(out, 0.0)
  with pytest.raises(ValueError, match=r"context_padding: expected a value in \[0, warp_size / 2\)"):
    R.warp_regions(_ramp(), jnp.zeros((1, 1, 4)), 8, context_padding=4)
  with pytest.raises(ValueError, match="warp_size: expected a positive int, got 0"):
    R.warp_regions(_ramp(), jnp.zeros((1, 1, 4)), 0)


# --- SPP -------------------------------------------------------------------------------------


def test_window_projection_is_the_papers_corner_mapping():
  boxes = jnp.array([
      [20.0, 9.0, 50.0, 40.0],  # x: floor(2.5) + 1 = 3, ceil(6.25) - 1 = 6; y: 2, ceil(5) - 1 = 4
      [16.0, 16.0, 24.0, 24.0],  # no cell centre inside: the cell of its centre, floor(3 + .5)
      [-100.0, -100.0, 1000.0, 1000.0],  # larger than the image: the whole map
      [-4.0, -4.0, 30.0, 30.0],  # cells 0..3
  ])
  np.testing.assert_array_equal(project_windows(boxes, 1 / 8, (8, 8)),
                                [[3, 2, 6, 4], [3, 3, 3, 3], [0, 0, 7, 7], [0, 0, 3, 3]])
  with pytest.raises(ValueError, match="spatial_scale: expected a positive float"):
    project_windows(boxes, 0.0, (8, 8))


def _spp_reference(f, cells, levels):
  """numpy transcription: bins [floor(i a / n), ceil((i + 1) a / n)) of the window's cells."""
  c1, r1, c2, r2 = (int(v) for v in cells)
  out = []
  for n in levels:
    level = np.zeros((n, n, f.shape[-1]), f.dtype)
    for i in range(n):
      for j in range(n):
        a, b = r2 - r1 + 1, c2 - c1 + 1
        ys = slice(r1 + int(np.floor(i * a / n)), r1 + int(np.ceil((i + 1) * a / n)))
        xs = slice(c1 + int(np.floor(j * b / n)), c1 + int(np.ceil((j + 1) * b / n)))
        level[i, j] = f[ys, xs].max(axis=(0, 1))
    out.append(level.reshape(-1))
  return np.concatenate(out)


def test_spp_bins_of_a_hand_made_map():
  y, x = np.mgrid[0:8, 0:8]
  f = np.stack([y * 8 + x, -(y * 8 + x)], -1).astype(np.float32)[None]  # [1, 8, 8, 2]
  spp = jax.jit(spatial_pyramid_pool, static_argnums=(2, 3))
  out = np.asarray(spp(f, jnp.array([[[-4.0, -4.0, 30.0, 30.0]]]), (1, 2, 4), 1 / 8))  # cells 0..3
  assert out.shape == (1, 1, 2 * (1 + 4 + 16))
  level1, level2, level4 = out[0, 0, :2], out[0, 0, 2:10], out[0, 0, 10:]
  np.testing.assert_array_equal(level1, [27, 0])  # max of y * 8 + x over the window; of its negation
  np.testing.assert_array_equal(level2.reshape(2, 2, 2)[..., 0], [[9, 11], [25, 27]])
  np.testing.assert_array_equal(level2.reshape(2, 2, 2)[..., 1], [[0, -2], [-16, -18]])
  np.testing.assert_array_equal(level4.reshape(4, 4, 2)[..., 0], (y * 8 + x)[:4, :4])


def test_spp_uneven_and_tiny_windows_match_the_reference():
  f = np.random.default_rng(0).permutation(8 * 8 * 3).reshape(1, 8, 8, 3).astype(np.float32)
  boxes = jnp.array([[[12.0, 4.0, 50.0, 30.0],  # cells x 2..6 (5), y 1..3 (3): overlapping bins
                      [16.0, 16.0, 24.0, 24.0],  # one cell, repeated in every bin
                      [0.0, 0.0, 64.0, 64.0]]])
  levels = (1, 2, 3, 4)
  out = np.asarray(jax.jit(spatial_pyramid_pool, static_argnums=(2, 3))(f, boxes, levels, 1 / 8))
  cells = np.asarray(project_windows(boxes, 1 / 8, (8, 8)))
  np.testing.assert_array_equal(cells[0, 0], [2, 1, 6, 3])
  for k in range(3):
    np.testing.assert_array_equal(out[0, k], _spp_reference(f[0], cells[0, k], levels))
  # Random windows, a non-square map, levels (1, 2, 3, 6) as the paper's.
  rng = np.random.default_rng(1)
  g = rng.normal(size=(2, 8, 7, 3)).astype(np.float32)
  corners = rng.uniform(-20, 80, size=(2, 30, 2, 2))
  windows = np.concatenate([corners.min(2), corners.max(2)], -1).astype(np.float32)
  got = np.asarray(jax.jit(spatial_pyramid_pool, static_argnums=(2, 3))(g, windows, (1, 2, 3, 6),
                                                                         1 / 8))
  cells_g = np.asarray(project_windows(windows, 1 / 8, (8, 7)))
  for b in range(2):
    for k in range(30):
      np.testing.assert_array_equal(got[b, k], _spp_reference(g[b], cells_g[b, k], (1, 2, 3, 6)))
  # vmap over an extra leading axis equals the per-slice calls.
  stacked = jax.jit(jax.vmap(lambda a, b: spatial_pyramid_pool(a, b, levels, 1 / 8)))(
      jnp.stack([f, f[..., ::-1]]), jnp.stack([boxes, boxes[:, ::-1]]))
  np.testing.assert_array_equal(stacked[0], out)
  for k in range(3):
    np.testing.assert_array_equal(stacked[1, 0, k],
                                  _spp_reference(f[0, ..., ::-1], cells[0, 2 - k], levels))
  with pytest.raises(ValueError, match="levels: expected a non-empty sequence of positive ints"):
    spatial_pyramid_pool(f, boxes, (), 1 / 8)
  with pytest.raises(ValueError, match=r"boxes: expected windows \[1, K, 4\]"):
    spatial_pyramid_pool(f, boxes[0], (1,), 1 / 8)


# --- tiny models -----------------------------------------------------------------------------

_BACKBONE = dict(backbone="resnet", backbone_options=dict(stage_sizes=(1,), widths=(4,),
                                                          stem="cifar", stem_width=4))
_X = jnp.asarray(np.random.default_rng(1).normal(size=(2, 16, 16, 3)), jnp.float32)
_PROPOSALS = jnp.array([[[2.0, 2.0, 10.0, 10.0], [4.0, 2.0, 11.0, 12.0], [0.0, 0.0, 16.0, 16.0],
                         [-8.0, 3.0, 6.0, 40.0]]] * 2)  # the last one crosses the border
_ALL = jnp.ones((2, 4), bool)
_TARGETS = {"boxes": jnp.array([[[2 / 16, 2 / 16, 10 / 16, 10 / 16], [0, 0, 0, 0]]] * 2),
            "classes": jnp.array([[2, 0]] * 2), "valid": jnp.array([[True, False]] * 2)}


@pytest.fixture(scope="module", params=["rcnn", "sppnet"])
def tiny(request):
  extra = dict(warp_size=8) if request.param == "rcnn" else dict(levels=(1, 2))
  model = create_model(request.param, num_classes=3, representation_size=8, roi_batch_size=8,
                       **_BACKBONE, **extra)
  variables = jax.jit(lambda x, p: model.init(jax.random.key(0), x, train=False, proposals=p))(
      _X, _PROPOSALS)
  predict = jax.jit(lambda x, p, v: model.apply(variables, x, train=False, proposals=p,
                                                proposal_valid=v))
  fit = jax.jit(lambda p, key: model.apply(variables, _X, train=True, targets=_TARGETS,
                                           proposals=p, rngs={"sampling": key},
                                           mutable=["batch_stats"]))
  features = jax.jit(lambda x, p: model.apply(variables, x, p, False,
                                              method=model.region_features))
  return request.param, predict, fit, features


def test_forward_shapes_and_detections(tiny):
  name, predict, _, region_features = tiny
  out = predict(_X, _PROPOSALS, _ALL)
  det = out["detections"]
  assert {k: v.shape for k, v in det.items()} == {"boxes": (2, 100, 4), "scores": (2, 100),
                                                  "labels": (2, 100), "valid": (2, 100)}
  valid = np.asarray(det["valid"])
  assert valid.any()
  boxes = np.asarray(det["boxes"])[valid]
  assert boxes.min() >= 0 and boxes.max() <= 16  # clipped to the image
  assert set(np.asarray(det["labels"])[valid].tolist()) <= {0, 1, 2}
  # The border-crossing proposal is clipped, not dropped.
  np.testing.assert_array_equal(out["proposals"]["boxes"][0, 3], [0.0, 3.0, 6.0, 16.0])
  feats = region_features(_X, _PROPOSALS)
  assert feats.shape[:2] == (2, 4)
  if name == "rcnn":  # one CNN pass per region: a region's features do not depend on the others
    alone = region_features(_X[:1], _PROPOSALS[:1, 2:3])
    np.testing.assert_allclose(feats[0, 2], alone[0, 0], rtol=1e-5, atol=1e-6)
  else:
    assert feats.shape[2] == 4 * (1 + 4)  # channels x (1 + 2 x 2) bins


def test_training_outputs_carry_per_class_regression_targets(tiny):
  _, _, fit, _ = tiny
  out, updates = fit(_PROPOSALS, jax.random.key(3))
  roi = out["roi"]
  assert roi["logits"].shape == (2, 8, 4) and roi["deltas"].shape == (2, 8, 4, 4)
  assert "batch_stats" in updates
  labels, rois, targets = (np.asarray(roi[k]) for k in ("labels", "rois", "targets"))
  gt = np.array([2.0, 2.0, 10.0, 10.0])
  fg = labels == 3  # class 2 + 1 (0 is background)
  # Candidates: the 4 proposals (IoU with the box 1, 0.56, 0.25, 0.25 after clipping) and the
  # box itself: 3 foreground, of which int(8 * 0.25) = 2 are sampled, and 2 background.
  assert fg.sum(1).tolist() == [2, 2] and (labels == 0).sum(1).tolist() == [2, 2]
  assert (labels[~fg & (labels != 0)] == -1).all()
  # Each foreground RoI's target encodes the true box relative to that RoI (weights 10, 10, 5, 5)
  # and decodes back to the box; background and padding RoIs have zero targets.
  np.testing.assert_allclose(targets[fg], encode_boxes(jnp.asarray(gt), rois[fg], BOX_WEIGHTS),
                             atol=1e-5)
  np.testing.assert_allclose(decode_boxes(targets[fg], rois[fg], BOX_WEIGHTS),
                             np.broadcast_to(gt, (4, 4)), atol=1e-4)
  # By hand for the proposal (4, 2, 11, 12): centre (7.5, 7), size 7 x 10, against the box's
  # centre (6, 6), size 8 x 8.
  np.testing.assert_allclose(encode_boxes(jnp.asarray(gt), _PROPOSALS[0, 1], BOX_WEIGHTS),
                             [10 * -1.5 / 7, 10 * -1 / 10, 5 * np.log(8 / 7), 5 * np.log(0.8)],
                             rtol=1e-5)
  # Regression is class-specific: only the deltas of each RoI's own class enter the loss.
  own = np.zeros((2, 8, 4, 4), np.float32)
  own[fg, 3] = targets[fg]
  other = np.roll(own, 1, axis=2)  # the same deltas put in the slot of another class
  loss = lambda d: float(L.roi_losses(roi["logits"], d, roi["labels"], roi["targets"])[
      "loss_box_reg"])
  assert loss(own) == 0.0 and loss(other) > 0.0
  np.testing.assert_array_equal(targets[~fg], 0.0)


def test_zero_and_invalid_proposals_are_handled(tiny):
  _, predict, fit, _ = tiny
  out = predict(_X, jnp.zeros((2, 0, 4)), jnp.zeros((2, 0), bool))  # an empty proposal set: padded, no detections
  assert out["proposals"]["boxes"].shape == (2, 1, 4)
  assert not np.asarray(out["detections"]["valid"]).any()
  valid = jnp.array([[True, True, True, True], [False, False, False, False]])
  out = predict(_X, _PROPOSALS, valid)  # the second image has no valid proposal
  assert not np.asarray(out["detections"]["valid"][1]).any()
  weird = _PROPOSALS.at[0, 0].set(jnp.nan).at[0, 1].set(jnp.array([9.0, 9.0, 3.0, 12.0])).at[
      0, 2].set(jnp.array([20.0, 20.0, 30.0, 30.0]))  # nan, inverted, outside the image
  out = predict(_X, weird, _ALL)
  np.testing.assert_array_equal(out["proposals"]["valid"][0], [False, False, False, True])
  assert np.isfinite(np.asarray(out["detections"]["boxes"])).all()
  # Training with no proposals at all: the true boxes are the only foreground RoIs.
  out, _ = fit(jnp.zeros((2, 0, 4)), jax.random.key(0))
  np.testing.assert_array_equal(out["roi"]["labels"][:, 0], [3, 3])
  assert (np.asarray(out["roi"]["labels"])[:, 1:] == -1).all()


def test_bad_proposal_arguments_are_named():
  model = create_model("rcnn", num_classes=3, representation_size=8, warp_size=8, **_BACKBONE)
  variables = {"params": {}}  # the checks come before any parameter is used
  with pytest.raises(ValueError, match="proposals: R-CNN and SPP-net classify given region"):
    model.apply(variables, _X, train=False)
  with pytest.raises(ValueError, match=r"proposals: expected pixel .* \[2, P, 4\], got shape \(4, 4\)"):
    model.apply(variables, _X, train=False, proposals=_PROPOSALS[0])
  with pytest.raises(ValueError, match=r"proposal_valid: expected shape \(2, 4\)"):
    model.apply(variables, _X, train=False, proposals=_PROPOSALS, proposal_valid=jnp.ones((2, 3)))
  with pytest.raises(ValueError, match="targets: training needs"):
    model.apply(variables, _X, train=True, proposals=_PROPOSALS)


def test_roi_head_options_are_declared_once_with_each_detectors_defaults():
  from jaxvision.models.faster_rcnn import FasterRCNN
  from jaxvision.models.registry import module_options
  from jaxvision.models.roi_heads import RoIDetector
  shared = module_options(RoIDetector)
  assert {"backbone", "num_classes", "roi_fg_iou", "max_detections", "box_smooth_l1_beta"} <= shared
  for name in ("faster_rcnn", "fast_rcnn", "rcnn", "sppnet"):
    model = create_model(name, num_classes=3, **_BACKBONE)
    assert isinstance(model, RoIDetector)
    assert shared - {"backbone"} <= set(model_options(name))
  assert create_model("faster_rcnn", num_classes=3).roi_batch_size == 512  # torchvision's
  assert create_model("rcnn", num_classes=3).roi_batch_size == 128  # the paper's mini-batch
  assert FasterRCNN(backbone=None, num_classes=3, roi_batch_size=64).roi_batch_size == 64


# --- the walk's helpers ----------------------------------------------------------------------


def test_walk_flips_boxes_and_formats_the_table():
  from jaxvision.analysis import detection_walk as W
  boxes = np.array([[[2.0, 1.0, 10.0, 5.0]], [[2.0, 1.0, 10.0, 5.0]]])
  np.testing.assert_array_equal(W._flip_boxes(boxes, np.array([True, False]), 64),
                                [[[54.0, 1.0, 62.0, 5.0]], [[2.0, 1.0, 10.0, 5.0]]])
  row = dict(method="R-CNN", map_voc07=0.5, map_voc12=0.25, train_s=12.3, test_s_per_image=0.3,
             ss_s_per_image=0.1, net_s_per_image=0.2, proposals_per_image=99.6,
             test_proposals_cap=None)
  meta = dict(dataset="d", train_images=8, test_images=4, steps=3, batch_size=2, rois_per_image=5,
              ss_ms=100.0, ss_images=4, test_padded_proposals=7, eval_batch_size=2, device="cpu",
              load=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], wall_s=1.0)
  table = W.markdown_table([row, {**row, "method": "Faster R-CNN", "ss_s_per_image": 0.0,
                                  "test_s_per_image": 0.2}], meta)
  lines = table.splitlines()
  assert lines[2] == "| R-CNN | 0.500 / 0.250 | 12 | 300.0 (100.0 + 200.0) | 100 |"
  assert lines[3] == "| Faster R-CNN | 0.500 / 0.250 | 12 | 200.0 (0 + 200.0) | 100 |"
  assert "load average (1, 5, 15 min) [1.0, 2.0, 3.0] at the start, [4.0, 5.0, 6.0]" in table


def _walk_split(n=6, size=32, k=5, seed=0):
  """A tiny in-memory split: one box per image, its proposals the box and shifted copies."""
  from jaxvision.analysis import detection_walk as W
  rng = np.random.default_rng(seed)
  corner = rng.uniform(0, size / 2, (n, 1, 2))
  boxes = np.concatenate([corner, corner + size / 3], -1).astype(np.float32)
  shifts = np.concatenate([np.zeros((1, 2)), rng.uniform(-4, 4, (k - 1, 2))])
  proposals = (boxes + np.tile(shifts, 2)[None]).clip(0, size).astype(np.float32)
  raw = rng.integers(0, 256, (n, size, size, 3)).astype(np.uint8)
  return W.Split(images=(raw / 255 - 0.5).astype(np.float32), raw=raw, boxes=boxes,
                 classes=rng.integers(0, 3, (n, 1)).astype(np.int32),
                 gt_valid=np.ones((n, 1), bool), difficult=np.zeros((n, 1), bool),
                 proposals=proposals, proposal_valid=np.arange(k) < np.array([[k], [2]] * (n // 2)))


def test_walk_batches_are_task_batches_and_pure_in_the_step():
  from jaxvision.analysis import detection_walk as W
  from jaxvision.training import config as config_lib
  from jaxvision.training.rcnn_task import RCNNDetection

  data = _walk_split()
  args = W.parse_args(["--batch-size", "4"])
  source = W.training_batches(data, args, uses_proposals=True)
  later = next(source(5))
  stream = source(3)
  next(stream), next(stream)
  for k, v in next(stream).items():  # step 5 is the same whichever step the stream started at
    np.testing.assert_array_equal(v, later[k])
  model = create_model("rcnn", num_classes=3, representation_size=8, warp_size=8, **_BACKBONE)
  RCNNDetection(model, 3).check_batch(later, image_shape=(32, 32, 3), num_classes=3)
  # A flipped image comes with its boxes and proposals flipped, normalised (ymin, xmin, ...).
  batch = W.detection_batch(data, np.arange(2), None, uses_proposals=True, max_proposals=3)
  assert batch["proposals"].shape == (2, 3, 4) and batch["proposal_valid"].shape == (2, 3)
  np.testing.assert_allclose(batch["boxes"][0, 0], data.boxes[0, 0, [1, 0, 3, 2]] / 32)
  assert "proposals" not in W.detection_batch(data, np.arange(2), None, uses_proposals=False)
  for method in W.METHODS:  # every method's run config passes the checks build_run makes
    config = W.walk_config(method, args, steps_per_epoch=312)
    config_lib.check_config(config)
    assert config.task == "rcnn_detection" and config.num_train_steps == args.steps


@pytest.mark.slow  # compiles R-CNN's train, eval and timed forward steps: 30-60 s
def test_walk_trains_rcnn_through_the_builder_and_fits_loop(tiny_shapes, monkeypatch, tmp_path):
  import json

  from jaxvision.analysis import detection_walk as W
  from jaxvision.data import detection
  from jaxvision.data.builders.shapes import ShapesConfig

  config = ShapesConfig(name="walk_test", image_size=32, num_train=16, num_test=4, max_shapes=3)
  data_dir, spec = tiny_shapes(config, "walk_tiny")
  monkeypatch.setitem(detection.DATASETS, "walk_tiny", spec)
  monkeypatch.setattr(W, "DATASET", "walk_tiny")
  args = W.parse_args(["--steps", "2", "--batch-size", "2", "--eval-batch-size", "4",
                       "--rois-per-image", "8", "--warp-size", "16", "--context-padding", "1",
                       "--data-dir", data_dir, "--out-dir", str(tmp_path)])
  r = W.train_and_evaluate("R-CNN", _walk_split(), _walk_split(n=4, seed=1), args,
                           steps_per_epoch=8)
  assert 0.0 <= r["map_voc07"] <= 1.0 and np.isfinite(r["eval_loss"])
  assert 0 < r["train_s"] and r["net_s_per_image"] > 0
  assert r["proposals_per_image"] == pytest.approx((5 + 2) / 2)  # the valid ones
  workdir = tmp_path / "runs" / "rcnn"
  logs = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  train = [m for m in logs if m["split"] == "train"]
  assert [m["step"] for m in train] == [2] and "loss_objectness" not in train[0]
  assert np.isfinite(train[0]["loss_classifier"])
  assert (workdir / "checkpoints").is_dir()
