"""Faster R-CNN / Fast R-CNN: anchors, the box coder, anchor and RoI sampling, the four losses,
the model's outputs under jit, the task, and training through `fit`."""

import functools
import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.losses import rcnn as L
from jaxvision.models import create_model
from jaxvision.models import roi_heads, rpn
from jaxvision.ops import (BBOX_XFORM_CLIP, box_iou, cell_anchors, decode_boxes, encode_boxes,
                           grid_anchors, sample_balanced)
from jaxvision.training.rcnn_task import RCNNDetection

# --- anchors ---------------------------------------------------------------------------------


def test_cell_anchors_are_torchvisions():
  # torchvision's AnchorGenerator((32,), (0.5, 1.0, 2.0)): w = 32 / sqrt(r), h = 32 sqrt(r),
  # halves rounded: 22.6 -> 23, 11.3 -> 11.
  np.testing.assert_array_equal(cell_anchors((32,), (0.5, 1.0, 2.0)),
                                [[-23, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23]])
  a = cell_anchors()  # the paper's 3 scales x 3 ratios, ratio-major
  assert a.shape == (9, 4)
  np.testing.assert_array_equal(a[3:6], [[-64, -64, 64, 64], [-128, -128, 128, 128],
                                         [-256, -256, 256, 256]])
  areas = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
  np.testing.assert_allclose(areas.reshape(3, 3), np.tile([128 ** 2, 256 ** 2, 512 ** 2], (3, 1)),
                             rtol=0.01)


@pytest.mark.parametrize("offset", [0.0, 0.5])
def test_grid_anchors_count_and_placement(offset):
  sizes, ratios = (8, 16), (0.5, 1.0, 2.0)
  a = grid_anchors((2, 3), (16, 8), sizes, ratios, offset)  # stride 16 down, 8 across
  assert a.shape == (2 * 3 * 6, 4) and a.dtype == np.float32
  cells = a.reshape(2, 3, 6, 4)
  centres = (cells[..., :2] + cells[..., 2:]) / 2  # (x, y)
  for i in range(2):
    for j in range(3):
      np.testing.assert_allclose(centres[i, j], np.tile([(j + offset) * 8, (i + offset) * 16],
                                                        (6, 1)))
      np.testing.assert_array_equal(cells[i, j] - cells[0, 0],
                                    np.tile([j * 8, i * 16, j * 8, i * 16], (6, 1)))
  with pytest.raises(ValueError, match=r"sizes, aspect_ratios: expected non-empty positive"):
    cell_anchors((32,), (0.0,))


# --- box coder -------------------------------------------------------------------------------


def test_box_coder_hand_case_and_round_trip():
  anchor = np.array([0.0, 0.0, 10.0, 20.0])
  box = np.array([5.0, 10.0, 15.0, 50.0])  # centre (10, 30) vs (5, 10); height doubled
  np.testing.assert_allclose(encode_boxes(box, anchor), [0.5, 1.0, 0.0, np.log(2)], rtol=1e-6)
  np.testing.assert_allclose(encode_boxes(box, anchor, (10, 10, 5, 5)),
                             [5.0, 10.0, 0.0, 5 * np.log(2)], rtol=1e-6)
  rs = np.random.RandomState(0)
  ref = np.concatenate([rs.uniform(0, 50, (20, 2)), rs.uniform(60, 100, (20, 2))], 1)
  boxes = np.concatenate([rs.uniform(0, 50, (20, 2)), rs.uniform(55, 120, (20, 2))], 1)
  for weights in ((1, 1, 1, 1), (10, 10, 5, 5)):
    codes = encode_boxes(boxes, ref, weights)
    np.testing.assert_allclose(decode_boxes(codes, ref, weights), boxes, rtol=1e-5, atol=1e-4)


def test_box_coder_clamps_dw_dh_before_exp():
  anchor = np.array([0.0, 0.0, 10.0, 10.0])
  out = np.asarray(decode_boxes(np.array([0.0, 0.0, 50.0, -5.0]), anchor))
  assert BBOX_XFORM_CLIP == pytest.approx(np.log(1000 / 16))
  np.testing.assert_allclose(out[2] - out[0], 10 * 1000 / 16, rtol=1e-5)  # dw clamped
  np.testing.assert_allclose(out[3] - out[1], 10 * np.exp(-5.0), rtol=1e-4)  # no lower clamp


# --- sampling --------------------------------------------------------------------------------


sample = jax.jit(sample_balanced, static_argnums=(3, 4))


@pytest.mark.parametrize("num_pos,num_neg,want_pos,want_neg", [
    (300, 1000, 128, 128),  # enough of both: 1:1
    (20, 1000, 20, 236),    # few positives: negatives fill up to 256
    (20, 50, 20, 50),       # few of both: everything
    (0, 1000, 0, 256),
])
def test_balanced_sampler_counts(num_pos, num_neg, want_pos, want_neg):
  m = 2000
  positive = np.zeros(m, bool)
  negative = np.zeros(m, bool)
  positive[:num_pos] = True
  negative[m - num_neg:] = True
  pos, neg = sample(jax.random.key(0), positive, negative, 256, 0.5)
  pos, neg = np.asarray(pos), np.asarray(neg)
  assert pos.sum() == want_pos and neg.sum() == want_neg
  assert not (pos & ~positive).any() and not (neg & ~negative).any()


def test_balanced_sampler_is_random_and_reproducible():
  positive, negative = np.arange(1000) < 500, np.arange(1000) >= 500
  a = [np.asarray(x) for x in sample(jax.random.key(0), positive, negative, 64, 0.25)]
  b = [np.asarray(x) for x in sample(jax.random.key(0), positive, negative, 64, 0.25)]
  c = [np.asarray(x) for x in sample(jax.random.key(1), positive, negative, 64, 0.25)]
  assert a[0].sum() == 16 and a[1].sum() == 48
  np.testing.assert_array_equal(a[0], b[0])
  assert (a[0] != c[0]).any() and (a[1] != c[1]).any()


GT = np.array([[8.0, 8.0, 24.0, 24.0], [30.0, 34.0, 56.0, 60.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
GT_VALID = np.array([True, True, False])
ANCHORS = grid_anchors((8, 8), 8, (12, 18, 26), (1.0,), 0.5)  # a 64 x 64 image at stride 8


def test_rpn_targets_follow_the_paper():
  targets_fn = jax.jit(functools.partial(rpn.rpn_targets, num_samples=32))
  labels, targets = targets_fn(jax.random.key(0), ANCHORS, GT, GT_VALID)
  labels, targets = np.asarray(labels), np.asarray(targets)
  iou = np.asarray(box_iou(ANCHORS, GT[:2]))
  best = iou.max(1)
  pos, neg = labels == 1, labels == 0
  # Positives: IoU >= 0.7 or an anchor of highest IoU for some box; negatives: IoU < 0.3.
  best_for_a_box = (iou == iou.max(0)).any(1)
  assert pos.any() and ((best[pos] >= 0.7) | best_for_a_box[pos]).all()
  assert (best[neg] < 0.3).all()
  assert set(np.argmax(iou[pos], 1)) == {0, 1}  # each box has a positive anchor
  assert pos.sum() <= 16 and pos.sum() + neg.sum() == 32
  # Regression targets decode back to the matched boxes; zero elsewhere.
  matched = GT[np.argmax(iou, 1)]
  np.testing.assert_allclose(decode_boxes(targets[pos], ANCHORS[pos]), matched[pos], atol=1e-4)
  assert not targets[~pos].any()
  # An image without boxes: only negatives.
  labels, _ = targets_fn(jax.random.key(0), ANCHORS, GT, np.zeros(3, bool))
  assert (np.asarray(labels) == 1).sum() == 0 and (np.asarray(labels) == 0).sum() == 32


sample_rois = jax.jit(roi_heads.sample_rois, static_argnames=("num_samples", "bg_iou_low"))


def jittered(rs, box, count, scale):
  wh = box[2:] - box[:2]
  return box + rs.uniform(-scale, scale, (count, 4)) * np.tile(wh, 2)


def test_roi_sampling_takes_512_at_1_to_3():
  rs = np.random.RandomState(0)
  proposals = np.concatenate([jittered(rs, GT[0], 300, 0.05), jittered(rs, GT[1], 300, 0.05),
                              64 + rs.uniform(0, 20, (400, 4)).cumsum(1)]).astype(np.float32)
  valid = np.ones(len(proposals), bool)
  classes = np.array([2, 0, 1])
  rois, labels, targets = sample_rois(jax.random.key(0), proposals, valid, GT, classes, GT_VALID)
  rois, labels, targets = (np.asarray(x) for x in (rois, labels, targets))
  assert rois.shape == (512, 4) and labels.shape == (512,) and targets.shape == (512, 4)
  fg = labels > 0
  assert fg.sum() == 128 and (labels == 0).sum() == 384
  iou = np.asarray(box_iou(rois, GT[:2]))
  assert (iou[fg].max(1) >= 0.5).all() and (iou[~fg].max(1) < 0.5).all()
  np.testing.assert_array_equal(labels[fg], classes[np.argmax(iou[fg], 1)] + 1)
  np.testing.assert_allclose(decode_boxes(targets[fg], rois[fg], roi_heads.BOX_WEIGHTS),
                             GT[np.argmax(iou[fg], 1)], atol=1e-3)
  # Few candidates: 5 proposals + 2 true boxes, the rest padding (-1, zero boxes).
  rois, labels, _ = sample_rois(jax.random.key(0), proposals[600:605], valid[:5], GT, classes,
                                GT_VALID, num_samples=16)
  labels = np.asarray(labels)
  assert (labels >= 0).sum() == 7 and (labels > 0).sum() == 2 and (labels[7:] == -1).all()
  assert not np.asarray(rois)[7:].any()


def test_roi_sampling_background_range():
  rs = np.random.RandomState(1)
  proposals = np.concatenate([jittered(rs, GT[0], 50, 0.6), rs.uniform(0, 20, (50, 4)).cumsum(1)])
  proposals = proposals.astype(np.float32)
  rois, labels, _ = sample_rois(jax.random.key(0), proposals, np.ones(100, bool), GT,
                                np.zeros(3, np.int32), GT_VALID, bg_iou_low=0.1)
  used = np.asarray(labels) == 0
  best = np.asarray(box_iou(rois, GT[:2])).max(1)
  assert used.any() and ((best[used] >= 0.1) & (best[used] < 0.5)).all()


# --- losses ----------------------------------------------------------------------------------


def perfect_outputs(big=40.0):
  """Outputs whose predictions equal their targets: 2 images, 6 anchors, 4 RoIs, K = 2."""
  rs = np.random.RandomState(0)
  rpn_labels = np.array([[1, 0, -1, 0, 1, -1], [0, 0, 0, -1, -1, -1]])
  rpn_targets = rs.randn(2, 6, 4).astype(np.float32) * (rpn_labels == 1)[..., None]
  roi_labels = np.array([[2, 0, 1, -1], [0, 0, -1, -1]])
  roi_targets = rs.randn(2, 4, 4).astype(np.float32) * (roi_labels > 0)[..., None]
  logits = big * (np.arange(3) == np.maximum(roi_labels, 0)[..., None]).astype(np.float32)
  deltas = rs.randn(2, 4, 3, 4).astype(np.float32)
  for b, r in np.argwhere(roi_labels > 0):
    deltas[b, r, roi_labels[b, r]] = roi_targets[b, r]
  return {"rpn": {"objectness": np.where(rpn_labels == 1, big, -big).astype(np.float32),
                  "deltas": rpn_targets + rs.randn(2, 6, 4).astype(np.float32) * (
                      rpn_labels != 1)[..., None],  # anything but on positives
                  "labels": rpn_labels, "targets": rpn_targets},
          "roi": {"logits": logits, "deltas": deltas, "labels": roi_labels,
                  "targets": roi_targets}}


losses = jax.jit(L.rcnn_losses)


def terms_of(outputs):
  total, terms = losses(outputs)
  return float(total), {k: float(v) for k, v in terms.items()}


def test_each_loss_is_zero_on_perfect_predictions():
  total, terms = terms_of(perfect_outputs())
  assert set(terms) == set(L.NAMES) | {"accuracy"}
  for name in L.NAMES:
    assert terms[name] < 1e-6, name
  assert total < 1e-6 and terms["accuracy"] == 1.0


@pytest.mark.parametrize("part,key,index,value,term,expected", [
    # An objectness logit of 0 on a sampled anchor: log 2 over the 7 sampled anchors.
    ("rpn", "objectness", (0, 1), 0.0, "loss_objectness", np.log(2) / 7),
    # ... on an unused anchor (label -1): no loss.
    ("rpn", "objectness", (0, 2), 0.0, None, 0.0),
    # An RPN delta off by 1 on a positive: smooth L1 (beta 1/9) = 1 - 1/18, over 7 sampled.
    ("rpn", "deltas", (0, 0, 2), 1.0, "loss_rpn_box_reg", (1 - 1 / 18) / 7),
    # Off by 0.1 < beta: 0.5 * 0.01 * 9.
    ("rpn", "deltas", (0, 4, 0), 0.1, "loss_rpn_box_reg", 0.5 * 0.01 * 9 / 7),
    # The true class logit of a RoI drops to the others' 0: log 3 over the 5 sampled RoIs.
    ("roi", "logits", (0, 1, 0), 0.0, "loss_classifier", np.log(3) / 5),
    # A foreground RoI's own class delta off by 1; another class's delta: no loss.
    ("roi", "deltas", (0, 0, 2, 3), 1.0, "loss_box_reg", (1 - 1 / 18) / 5),
    ("roi", "deltas", (0, 0, 1, 3), 1.0, None, 0.0),
])
def test_each_loss_responds_to_its_own_error(part, key, index, value, term, expected):
  out = perfect_outputs()
  if key in ("objectness", "logits"):  # set a logit
    out[part][key][index] = value
  else:  # move a delta
    out[part][key][index] += value
  total, terms = terms_of(out)
  for name in L.NAMES:
    want = expected if name == term else 0.0
    assert terms[name] == pytest.approx(want, rel=1e-4, abs=1e-6), name
  assert total == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_fast_rcnn_losses_and_per_image_losses():
  out = perfect_outputs()
  del out["rpn"]
  out["roi"]["logits"][1, 0] = [0.0, 40.0, 0.0]  # image 1: one of its 2 RoIs wrong, CE 40
  total, terms = losses(out)
  assert set(terms) == {"loss_classifier", "loss_box_reg", "accuracy"}
  per_total, per_terms = jax.jit(L.per_image_losses)(out)
  np.testing.assert_allclose(per_total, [0.0, 40.0 / 2], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(per_terms["accuracy"], [1.0, 0.5])
  assert float(total) == pytest.approx(40.0 / 5, rel=1e-4)


# --- the model -------------------------------------------------------------------------------

C = 3
BACKBONE = dict(stage_sizes=(1, 1), widths=(4, 8), stem="imagenet", stem_width=4)
COMMON = dict(backbone="resnet", backbone_options=BACKBONE, anchor_sizes=(8, 12),
              aspect_ratios=(1.0,), anchor_offset=0.5, representation_size=16, roi_output_size=3,
              roi_batch_size=8, max_detections=6)
TINY = dict(COMMON, rpn_pre_nms_top_n_train=24, rpn_post_nms_top_n_train=12,
            rpn_pre_nms_top_n_test=24, rpn_post_nms_top_n_test=10, rpn_batch_size=16)
OPTIONS = {"faster_rcnn": TINY, "fast_rcnn": COMMON}
IMAGES = np.random.RandomState(0).randn(2, 32, 32, 3).astype(np.float32)
TARGETS = {"boxes": np.array([[[0.1, 0.1, 0.5, 0.4], [0.5, 0.6, 0.9, 0.9]],
                              [[0.2, 0.2, 0.6, 0.6], [0.0, 0.0, 0.0, 0.0]]], np.float32),
           "classes": np.array([[0, 2], [1, 0]], np.int32),
           "valid": np.array([[True, True], [True, False]])}


@pytest.fixture(scope="module")
def tiny():
  """(model, variables, evaluation outputs) of a tiny Faster R-CNN, in one compilation."""
  model = create_model("faster_rcnn", num_classes=C, **TINY)
  out, variables = jax.jit(lambda: model.init_with_output(jax.random.key(0), IMAGES,
                                                          train=False))()
  return model, variables, out


def test_outputs_have_torchvisions_format_under_jit(tiny):
  model, _, out = tiny
  d = {k: np.asarray(v) for k, v in out["detections"].items()}
  assert d["boxes"].shape == (2, 6, 4) and d["boxes"].dtype == np.float32
  assert d["scores"].shape == d["labels"].shape == d["valid"].shape == (2, 6)
  assert d["valid"].dtype == bool and d["labels"].dtype == np.int32
  v = d["valid"]
  assert ((d["boxes"][v] >= 0) & (d["boxes"][v] <= 32)).all()
  assert (d["boxes"][v][:, 2:] >= d["boxes"][v][:, :2]).all()  # (x1, y1, x2, y2)
  assert ((d["labels"][v] >= 0) & (d["labels"][v] < C)).all() and (d["scores"][v] > 0.05).all()
  assert not d["boxes"][~v].any() and not d["scores"][~v].any()
  for i in range(2):  # by decreasing score
    s = d["scores"][i][v[i]]
    assert (np.diff(s) <= 0).all()
  assert "roi" not in out and "rpn" not in out  # no targets: no training parts
  assert out["proposals"]["boxes"].shape == (2, 10, 4)


@pytest.mark.parametrize("name", ["faster_rcnn", "fast_rcnn"])
def test_training_outputs_need_targets_and_a_sampling_rng(name):
  model = create_model(name, num_classes=C, **OPTIONS[name])
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), IMAGES, train=False))
  with pytest.raises(ValueError, match="targets: training needs the batch's boxes"):
    jax.eval_shape(lambda v: model.apply(v, IMAGES, train=True, mutable=["batch_stats"]),
                   variables)
  with pytest.raises(ValueError, match=r"rngs: training samples anchors and RoIs at random; pass "
                                       r"rngs=\{'sampling': key\}"):
    jax.eval_shape(lambda v: model.apply(v, IMAGES, train=True, targets=TARGETS,
                                         mutable=["batch_stats"]), variables)
  out, _ = jax.eval_shape(lambda v: model.apply(
      v, IMAGES, train=True, targets=TARGETS, rngs={"sampling": jax.random.key(0)},
      mutable=["batch_stats"]), variables)
  assert "detections" not in out
  assert out["roi"]["logits"].shape == (2, 8, C + 1) and out["roi"]["deltas"].shape == (2, 8,
                                                                                        C + 1, 4)
  assert out["roi"]["labels"].shape == (2, 8) and out["roi"]["targets"].shape == (2, 8, 4)
  grid = (32 // 8) ** 2 * 2  # the stride-8 map, 2 anchors per position
  if model.use_rpn:
    assert out["rpn"]["objectness"].shape == (2, grid)
    assert out["rpn"]["deltas"].shape == (2, grid, 4)
    assert out["rpn"]["labels"].shape == (2, grid) and out["proposals"]["boxes"].shape == (2, 12, 4)
  else:
    assert "rpn" not in out and out["proposals"]["boxes"].shape == (2, grid, 4)
  # In evaluation with targets: the training parts (for validation losses) and detections.
  out = jax.eval_shape(lambda v: model.apply(v, IMAGES, train=False, targets=TARGETS), variables)
  assert out["roi"]["labels"].shape == (2, 8) and out["detections"]["boxes"].shape == (2, 6, 4)


def test_fast_rcnn_takes_given_proposals():
  model = create_model("fast_rcnn", num_classes=C, **COMMON)
  proposals = np.tile(np.array([[2.0, 2.0, 14.0, 14.0], [16, 16, 30, 30], [0, 0, 0, 0]],
                               np.float32), (2, 1, 1))
  valid = np.array([[True, True, False]] * 2)
  out = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), IMAGES, train=False, proposals=proposals, proposal_valid=valid)[0])
  assert out["proposals"]["boxes"].shape == (2, 3, 4)
  rpn = create_model("faster_rcnn", num_classes=C, **TINY)
  with pytest.raises(ValueError, match="proposals: Faster R-CNN makes its own"):
    jax.eval_shape(lambda: rpn.init(jax.random.key(0), IMAGES, train=False, proposals=proposals))


def test_bad_options_are_named():
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['rpn_batch_size'\]"):
    create_model("fast_rcnn", num_classes=C, rpn_batch_size=8)
  bad = create_model("faster_rcnn", num_classes=C, **{**TINY, "roi_pool": "max"})
  with pytest.raises(ValueError, match="roi_pool: expected 'align' or 'pool', got 'max'"):
    jax.eval_shape(lambda: bad.init(jax.random.key(0), IMAGES, train=False))
  bad = create_model("faster_rcnn", num_classes=C, **{**TINY, "rpn_fg_iou": 1.5})
  with pytest.raises(ValueError, match=r"rpn_fg_iou: expected a value in \[0, 1\], got 1.5"):
    jax.eval_shape(lambda: bad.init(jax.random.key(0), IMAGES, train=False))
  model = create_model("faster_rcnn", num_classes=C, **TINY)
  with pytest.raises(ValueError, match=r"give a 4 x 4 feature map that does not divide them"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 30, 30, 3)), train=False))


def test_roi_pool_variant_builds():
  model = create_model("faster_rcnn", num_classes=C, **{**TINY, "roi_pool": "pool"})
  out = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), IMAGES, train=False)[0])
  assert out["detections"]["boxes"].shape == (2, 6, 4)


# --- the task --------------------------------------------------------------------------------


def test_task_scores_perfect_detections():
  model = create_model("faster_rcnn", num_classes=C, **TINY)
  task = RCNNDetection(model, C)
  boxes = TARGETS["boxes"] * 32  # normalised yxyx -> pixel xyxy
  pixel = boxes[..., [1, 0, 3, 2]]
  out = perfect_outputs()
  out["detections"] = {"boxes": np.concatenate([pixel, np.zeros((2, 1, 4))], 1).astype(np.float32),
                       "scores": np.array([[0.9, 0.8, 0.0], [0.7, 0.0, 0.0]], np.float32),
                       "labels": np.array([[0, 2, 0], [1, 0, 0]], np.int32),
                       "valid": np.array([[True, True, False], [True, False, False]])}
  batch = {"image": IMAGES, **TARGETS}
  acc = task.accumulator()
  acc.add(jax.jit(task.eval_outputs)(out, batch))
  r = acc.result()
  assert r["map_voc07"] == 1.0 and r["coco_AP"] == pytest.approx(1.0)
  assert r["loss"] < 1e-6 and r["accuracy"] == 1.0
  loss, metrics = task.loss(out, batch)
  assert float(loss) < 1e-6 and set(metrics) == {"loss", "accuracy", *L.NAMES}
  kwargs = task.model_kwargs({**batch, "proposals": np.zeros((2, 3, 4))}, train=True)
  assert sorted(kwargs) == ["proposal_valid", "proposals", "targets"]
  with pytest.raises(ValueError, match=r"model: the rcnn_detection task needs an R-CNN model "
                                       r"\(faster_rcnn, fast_rcnn, rcnn, sppnet\), got YOLO"):
    RCNNDetection(create_model("yolov2", num_classes=C), C)


# --- training through fit --------------------------------------------------------------------


def test_train_and_eval_steps_pass_targets_and_a_sampling_rng():
  import optax

  from jaxvision.training import steps, train_state

  model = create_model("faster_rcnn", num_classes=C, **TINY)
  task = RCNNDetection(model, C)
  state = jax.eval_shape(lambda: train_state.create_train_state(
      model, optax.adamw(1e-3), jax.random.key(0), (32, 32, 3)))
  batch = {"image": IMAGES, **TARGETS}
  new_state, metrics = jax.eval_shape(steps.make_train_step(task), state, batch,
                                      jax.random.key(1))
  assert set(metrics) == {"loss", "accuracy", *L.NAMES}
  assert jax.tree.map(lambda x: x.shape, new_state.params) == jax.tree.map(lambda x: x.shape,
                                                                           state.params)
  out = jax.eval_shape(steps.make_eval_step(task), state, batch)
  assert out["det_boxes"].shape == (2, 6, 4) and out["loss"].shape == (2,)



@pytest.fixture
def rcnn_tiny(tiny_shapes, monkeypatch):
  """The dataset name "rcnn_tiny" over a tiny shapes build (32 x 32, 16 train / 4 test images)."""
  from jaxvision.data import detection
  from jaxvision.data.builders.shapes import ShapesConfig

  config = ShapesConfig(name="rcnn_test", image_size=32, num_train=16, num_test=4, max_shapes=3)
  data_dir, spec = tiny_shapes(config, "rcnn_tiny")
  monkeypatch.setitem(detection.DATASETS, "rcnn_tiny", spec)
  return data_dir


@pytest.mark.slow  # three compilations (train, eval, overlay predictions): 25-60 s
def test_fit_trains_two_steps_and_evaluates(rcnn_tiny, tmp_path):
  from jaxvision.training.fit import fit

  c = importlib.import_module("jaxvision.configs.faster_rcnn_shapes").get_config()
  c.model.options.update(TINY)
  c.dataset.name, c.dataset.data_dir = "rcnn_tiny", rcnn_tiny
  c.batch_size, c.eval_batch_size, c.num_train_steps = 4, 4, 2
  c.log_every_steps, c.plot = 1, False
  summary = fit(c, tmp_path, progress=False)
  assert summary["steps"] == 2 and 0.0 <= summary["eval"]["map_voc07"] <= 1.0
  logs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train = [m for m in logs if m["split"] == "train"]
  assert len(train) == 2 and all(np.isfinite(m[k]) for m in train for k in L.NAMES)
  assert np.isfinite(summary["eval"]["loss"]) and "coco_AP" in summary["eval"]
  assert len(list((tmp_path / "detections").iterdir())) == 4  # the overlays


@pytest.mark.slow  # compiles a train and an eval step per config
@pytest.mark.parametrize("name", ["faster_rcnn_voc", "faster_rcnn_coco"])
@pytest.mark.usefixtures("ordered_mock_boxes")
def test_voc_and_coco_configs_train_on_mock_data(name, tmp_path):
  import tensorflow_datasets as tfds

  from jaxvision.training.fit import fit

  c = importlib.import_module(f"jaxvision.configs.{name}").get_config()
  c.model.options.update(TINY)  # the config's dataset and task; a tiny model and input
  c.dataset.data_dir, c.dataset.image_size = str(tmp_path / "data"), 32
  c.batch_size = c.eval_batch_size = 4
  c.num_train_steps, c.plot = 2, False
  with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
    summary = fit(c, tmp_path / "run", progress=False)
  assert summary["steps"] == 2 and summary["dataset"] == c.dataset.name
