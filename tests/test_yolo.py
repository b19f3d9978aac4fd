"""YOLO: target assignment, the v1/v2 losses term by term, decoding round trips, k-means
anchors, the model's output shapes and bad options."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.losses import yolo as yl
from jaxvision.models import create_model
from jaxvision.models.yolo import YOLO, decode, detect
from jaxvision.ops import kmeans_anchors
from jaxvision.training.detection_task import Detection, check_detection_batch

S, NB, C = 4, 2, 3
ANCHORS = ((0.1, 0.1), (0.5, 0.25))

# Image 0: a box centred in cell (row 1, col 2), one in cell (3, 0) and a padding row.
# Image 1: no boxes at all.
BOXES = np.array([[[0.30, 0.55, 0.40, 0.65], [0.70, 0.05, 0.95, 0.20], [0.0, 0.0, 0.0, 0.0]],
                  [[0.0, 0.0, 0.0, 0.0]] * 3], np.float32)
CLASSES = np.array([[2, 1, 0], [0, 0, 0]], np.int32)
VALID = np.array([[True, True, False], [False, False, False]])


# Jitted once per shape and shared by the tests (eager dispatch of every op is slower).
targets_v1 = jax.jit(yl.build_targets_v1, static_argnums=3)
targets_v2 = jax.jit(yl.build_targets_v2, static_argnums=(3, 4))
loss_v1 = jax.jit(yl.yolov1_loss, static_argnames=("num_boxes", "rescore"))
loss_v2 = jax.jit(yl.yolov2_loss, static_argnames="anchors")


def yolov1_model(**kw):
  return YOLO(backbone=None, num_classes=C, num_boxes=NB, **kw)


def yolov2_model(**kw):
  return YOLO(backbone=None, num_classes=C, anchors=ANCHORS, **kw)


def test_v1_targets_put_each_box_in_the_cell_of_its_centre():
  t = targets_v1(BOXES, CLASSES, VALID, S)
  assert np.argwhere(np.asarray(t["object"])).tolist() == [[0, 1, 2], [0, 3, 0]]
  np.testing.assert_allclose(t["boxes"][0, 1, 2], [0.6, 0.35, 0.1, 0.1], atol=1e-6)  # cx cy w h
  np.testing.assert_allclose(t["boxes"][0, 3, 0], [0.125, 0.825, 0.15, 0.25], atol=1e-6)
  assert int(t["classes"][0, 1, 2]) == 2 and int(t["classes"][0, 3, 0]) == 1
  assert not np.asarray(t["object"][1]).any()


def test_v1_targets_when_boxes_share_a_cell_the_last_is_used():
  boxes = np.array([[[0.0, 0.0, 0.2, 0.2], [0.05, 0.05, 0.15, 0.1], [0.0, 0.0, 0.1, 0.1]]],
                   np.float32)
  t = targets_v1(boxes, np.array([[0, 1, 2]]), np.array([[True, True, False]]), S)
  assert int(np.asarray(t["object"]).sum()) == 1 and int(t["classes"][0, 0, 0]) == 1


def test_v2_targets_pick_the_anchor_of_best_shape():
  t = targets_v2(BOXES, CLASSES, VALID, S, ANCHORS)
  # 0.1 x 0.1 -> anchor 0 (IoU 1); 0.15 wide x 0.25 high -> anchor 1 (0.0375 / 0.125 = 0.3 vs
  # 0.01 / 0.0375 = 0.27).
  assert np.argwhere(np.asarray(t["object"])).tolist() == [[0, 1, 2, 0], [0, 3, 0, 1]]
  assert int(t["classes"][0, 3, 0, 1]) == 1


def perfect_v1(targets, num_boxes=NB):
  """Outputs whose predictor 0 is exactly each object; every other confidence 0."""
  obj = np.asarray(targets["object"])
  tb = np.asarray(targets["boxes"])
  b, s = obj.shape[:2]
  out = np.zeros((b, s, s, 5 * num_boxes + C), np.float32)
  for i, r, c in np.argwhere(obj):
    cx, cy, w, h = tb[i, r, c]
    out[i, r, c, :5] = [cx * s - c, cy * s - r, np.sqrt(w), np.sqrt(h), 1.0]
    out[i, r, c, 5 * num_boxes + int(targets["classes"][i, r, c])] = 1.0
  return out


def v1_loss(out, rescore=True):
  t = targets_v1(BOXES, CLASSES, VALID, S)
  loss, terms = loss_v1(jnp.asarray(out), t, num_boxes=NB, rescore=rescore)
  return float(loss), {k: float(v) for k, v in terms.items()}


def test_v1_loss_is_zero_for_a_perfect_prediction():
  loss, terms = v1_loss(perfect_v1(targets_v1(BOXES, CLASSES, VALID, S)))
  assert loss < 1e-10 and terms["accuracy"] == 1.0


@pytest.mark.parametrize("index,delta,term,expected", [
    ((0, 1, 2, 0), 0.1, "coord", 5.0 * 0.01 / 2),      # x of the responsible box
    ((0, 1, 2, 2), 0.2, "coord", 5.0 * 0.04 / 2),      # sqrt w
    ((0, 1, 2, 4), -0.3, "object", 0.09 / 2),           # its confidence
    ((0, 1, 2, 9), 0.3, "noobject", 0.5 * 0.09 / 2),    # the other predictor's confidence
    ((1, 0, 0, 4), 0.4, "noobject", 0.5 * 0.16 / 2),    # a predictor of an empty cell
    ((0, 3, 0, 10), 0.5, "class", 0.25 / 2),            # a class probability of an object cell
    ((1, 2, 2, 10), 0.5, None, 0.0),                    # class of an empty cell: no loss
])
def test_each_v1_term_responds_to_its_own_error(index, delta, term, expected):
  # Confidence target 1 (rescore=False): with the IoU as target, a box error also moves the
  # object term (tested below).
  out = perfect_v1(targets_v1(BOXES, CLASSES, VALID, S))
  out[index] += delta
  loss, terms = v1_loss(out, rescore=False)
  for name in ("coord", "object", "noobject", "class"):
    want = expected if name == term else 0.0
    assert terms[name] == pytest.approx(want, rel=1e-4, abs=1e-6), name
  assert loss == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_v1_responsible_predictor_is_the_best_overlap_else_the_nearest():
  target = jnp.array([[0.5, 0.5, 0.2, 0.2], [0.85, 0.8, 0.02, 0.02]])
  preds = jnp.array([[[0.1, 0.1, 0.1, 0.1], [0.52, 0.5, 0.2, 0.2], [0.5, 0.5, 0.3, 0.3]],
                     # No overlap at all: the nearest box (squared error), not predictor 0.
                     [[0.0, 0.0, 0.01, 0.01], [0.9, 0.9, 0.05, 0.05], [0.0, 0.9, 0.05, 0.05]]])
  resp = jax.jit(yl.responsible_predictor)(preds[None, None], target[None, None])
  assert np.asarray(resp[0, 0]).tolist() == [[False, True, False], [False, True, False]]


def test_v1_confidence_target_is_the_iou_and_the_responsible_predictor_moves():
  t = targets_v1(BOXES, CLASSES, VALID, S)
  out = perfect_v1(t)
  out[0, 1, 2, 5:10] = out[0, 1, 2, 0:5]   # predictor 1 also exact ...
  out[0, 1, 2, 2] = 0.5 * np.sqrt(0.1)       # ... predictor 0 half as wide: IoU 0.5
  _, terms = v1_loss(out)
  # Predictor 1 is responsible (IoU 1, conf 1: no object loss); predictor 0 is not: its
  # confidence 1 costs lambda_noobj; its box costs nothing.
  assert terms["object"] == pytest.approx(0.0, abs=1e-6)
  assert terms["coord"] == pytest.approx(0.0, abs=1e-6)
  assert terms["noobject"] == pytest.approx(0.5 * 1.0 / 2)
  # A box error lowers the IoU, the confidence target: x off by 0.1 cell = 0.025 of the image
  # on a 0.1-wide box -> IoU 0.075 / 0.125 = 0.6.
  out = perfect_v1(t)
  out[0, 1, 2, 0] += 0.1
  assert v1_loss(out)[1]["object"] == pytest.approx((1 - 0.6) ** 2 / 2, rel=1e-4)


def perfect_v2(targets, big=30.0):
  obj = np.asarray(targets["object"])
  tb = np.asarray(targets["boxes"])
  b, s, _, a = obj.shape
  out = np.zeros((b, s, s, a, 5 + C), np.float32)
  out[..., 4] = -big
  for i, r, c, k in np.argwhere(obj):
    cx, cy, w, h = tb[i, r, c, k]
    ox, oy = cx * s - c, cy * s - r
    out[i, r, c, k, :5] = [np.log(ox / (1 - ox)), np.log(oy / (1 - oy)),
                           np.log(w / ANCHORS[k][0]), np.log(h / ANCHORS[k][1]), big]
    out[i, r, c, k, 5 + int(targets["classes"][i, r, c, k])] = big
  return out.reshape(b, s, s, a * (5 + C))


def v2_loss(out):
  t = targets_v2(BOXES, CLASSES, VALID, S, ANCHORS)
  loss, terms = loss_v2(jnp.asarray(out), t, BOXES, VALID, anchors=ANCHORS)
  return float(loss), {k: float(v) for k, v in terms.items()}


def test_v2_loss_is_zero_for_a_perfect_prediction_and_terms_respond():
  t = targets_v2(BOXES, CLASSES, VALID, S, ANCHORS)
  out = perfect_v2(t)
  loss, terms = v2_loss(out)
  assert loss < 1e-6 and terms["accuracy"] == 1.0
  per_anchor = 5 + C
  moved = out.copy()
  moved[0, 1, 2, 2] += 0.1  # tw of (1, 2) anchor 0: (2 - 0.01) * 0.01 / 2 images
  assert v2_loss(moved)[1]["coord"] == pytest.approx(1.99 * 0.01 / 2, rel=1e-4)
  moved = out.copy()
  moved[1, 0, 0, per_anchor + 4] = 0.0  # objectness 0.5 in an empty image
  assert v2_loss(moved)[1]["noobject"] == pytest.approx(0.25 / 2, rel=1e-4)
  moved = out.copy()
  moved[0, 1, 2, 5 + 2] = 0.0  # the true class logit drops to the others' level
  assert v2_loss(moved)[1]["class"] == pytest.approx(np.log(3) / 2, rel=1e-4)


def test_v2_ignores_predictions_that_already_overlap_a_box():
  t = targets_v2(BOXES, CLASSES, VALID, S, ANCHORS)
  out = perfect_v2(t).reshape(2, S, S, 2, 5 + C)
  # Anchor 1 of cell (1, 2) predicts the box of anchor 0 exactly: not responsible, but IoU 1
  # > 0.6, so its objectness costs nothing; the same prediction in a far cell does cost.
  out[0, 1, 2, 1, :4] = [out[0, 1, 2, 0, 0], out[0, 1, 2, 0, 1], np.log(0.1 / 0.5),
                         np.log(0.1 / 0.25)]
  out[0, 1, 2, 1, 4] = 0.0
  assert v2_loss(out.reshape(2, S, S, -1))[1]["noobject"] == pytest.approx(0.0, abs=1e-6)
  out[0, 1, 2, 1, 2] = np.log(0.01 / 0.5)  # now a much smaller box: IoU 0.01
  assert v2_loss(out.reshape(2, S, S, -1))[1]["noobject"] == pytest.approx(0.25 / 2, rel=1e-4)


@pytest.mark.parametrize("version", [1, 2])
def test_decode_and_nms_recover_the_boxes(version):
  model = yolov1_model() if version == 1 else yolov2_model()
  if version == 1:
    out = perfect_v1(targets_v1(BOXES, CLASSES, VALID, S))
  else:
    out = perfect_v2(targets_v2(BOXES, CLASSES, VALID, S, ANCHORS))
  boxes, scores, classes = decode(model, jnp.asarray(out))
  assert boxes.shape == (2, S * S * (NB if version == 1 else 2), 4)
  d = jax.jit(lambda o: detect(model, o))(jnp.asarray(out))
  assert d["boxes"].shape == (2, 100, 4) and np.asarray(d["valid"][1]).sum() == 0
  valid = np.asarray(d["valid"][0])
  assert valid.sum() == 2
  np.testing.assert_allclose(np.asarray(d["boxes"][0])[valid], BOXES[0, :2], atol=1e-5)
  assert np.asarray(d["classes"][0])[valid].tolist() == [2, 1]
  np.testing.assert_allclose(np.asarray(d["scores"][0])[valid], 1.0, atol=1e-5)
  assert not np.asarray(d["boxes"][0])[~valid].any()


def test_kmeans_anchors_find_the_shape_clusters():
  rs = np.random.RandomState(0)
  centres = np.array([[0.1, 0.1], [0.2, 0.6], [0.6, 0.3]])
  wh = np.concatenate([c * np.exp(rs.normal(0, 0.05, (50, 2))) for c in centres])
  anchors, mean_iou = kmeans_anchors(wh, 3, seed=1)
  np.testing.assert_allclose(anchors, centres, rtol=0.05)  # sorted by area
  assert 0.85 < float(mean_iou) <= 1.0
  one, one_iou = kmeans_anchors(wh, 1)
  assert float(one_iou) < float(mean_iou)
  with pytest.raises(ValueError, match=r"k: expected 1 <= k <= 150 \(the number of boxes\), "
                                       r"got 200"):
    kmeans_anchors(wh, 200)
  with pytest.raises(ValueError, match=r"wh: expected box sizes \[N, 2\], got shape \(150, 4\)"):
    kmeans_anchors(np.zeros((150, 4)), 2)


BACKBONE = dict(stage_sizes=(1, 1), widths=(4, 8), stem="cifar", stem_width=4)


@pytest.mark.parametrize("name,extra,channels", [
    ("yolov1", {"num_boxes": 2}, 5 * 2 + C),
    ("yolov2", {"anchors": ANCHORS}, 2 * (5 + C)),
])
def test_model_output_shapes(name, extra, channels):
  model = create_model(name, num_classes=C, backbone="resnet", backbone_options=BACKBONE,
                       head_width=8, head_depth=1, grid_size=8, **extra)
  x = jnp.zeros((2, 16, 16, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  out = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  assert out.shape == (2, 8, 8, channels) and out.dtype == jnp.float32
  assert "fc" not in variables["params"]["backbone"]  # the backbone's classifier is not built
  with pytest.raises(ValueError, match=r"into a 16 x 16 grid; this YOLO expects grid_size=8 "
                                       r"\(use images 16 pixels wide"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))


def test_bad_model_options_are_named():
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['anchors'\]"):
    create_model("yolov1", num_classes=3, anchors=ANCHORS)
  with pytest.raises(ValueError, match="anchors: expected .* positive image fractions"):
    model = create_model("yolov2", num_classes=3, backbone="resnet", backbone_options=BACKBONE,
                         anchors=((0.1, -0.2),))
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False))
  with pytest.raises(ValueError, match="anchors: YOLOv2 needs at least one"):
    create_model("yolov2", num_classes=3, anchors=())


def test_detection_task_scores_perfect_outputs():
  task = Detection(yolov1_model(), C)
  out = perfect_v1(targets_v1(BOXES, CLASSES, VALID, S))
  batch = {"image": jnp.zeros((2, 16, 16, 3)), "boxes": BOXES, "classes": CLASSES, "valid": VALID}
  acc = task.accumulator()
  acc.add(jax.jit(task.eval_outputs)(jnp.asarray(out), batch))
  r = acc.result()
  assert r["map_voc07"] == 1.0 and r["map_voc12"] == 1.0
  assert r["ap_voc12_1"] == 1.0 and "ap_voc12_0" not in r  # class 0 has no objects
  assert r["coco_AP"] == pytest.approx(1.0) and r["coco_AP75"] == pytest.approx(1.0)
  assert r["loss"] < 1e-8 and r["accuracy"] == 1.0
  loss, metrics = task.loss(jnp.asarray(out), batch)
  assert float(loss) < 1e-8 and set(metrics) == {"loss", "coord", "object", "noobject", "class",
                                                  "accuracy"}


GOOD = {"image": np.zeros((2, 16, 16, 3), np.float32), "boxes": BOXES,
        "classes": np.where(VALID, CLASSES, 99),  # padding rows may hold anything
        "valid": VALID}


@pytest.mark.parametrize("change,err,match", [
    ({"boxes": BOXES[..., :3]}, ValueError,
     r"batch\['boxes'\]: expected shape \[2, N, 4\], got \(2, 3, 3\)"),
    ({"valid": VALID[:, :2]}, ValueError,
     r"batch\['valid'\]: expected shape \(2, 3\) like the boxes"),
    ({"classes": CLASSES.astype(np.float32)}, TypeError, "integer class ids, got dtype float32"),
    ({"valid": VALID.astype(np.int32)}, TypeError,
     r"batch\['valid'\]: expected bool, got dtype int32"),
    ({"classes": np.array([[3, 1, 0], [0, 0, 0]])}, ValueError,
     r"class ids in \[0, 3\) for valid boxes, got values in \[1, 3\]"),
    ({"boxes": BOXES * 2}, ValueError, r"normalised to \[0, 1\], got values in \[0.1, 1.9\]"),
    ({"boxes": BOXES[..., [2, 1, 0, 3]]}, ValueError, r"ymin <= ymax and xmin <= xmax, got \[0.4"),
    ({"image": np.zeros((2, 16, 16, 1), np.float32)}, ValueError, "expected 3 channels"),
])
def test_bad_detection_batches_are_named(change, err, match):
  check_detection_batch(GOOD, image_shape=(16, 16, 3), num_classes=C)
  with pytest.raises(err, match=match):
    check_detection_batch({**GOOD, **change}, image_shape=(16, 16, 3), num_classes=C)
  no_boxes = {**GOOD, "valid": np.zeros_like(VALID)}  # images without objects are fine
  check_detection_batch(no_boxes, image_shape=(16, 16, 3), num_classes=C)
  with pytest.raises(ValueError, match=r"batch: missing \['valid'\]"):
    check_detection_batch({k: v for k, v in GOOD.items() if k != "valid"}, image_shape=(16, 16, 3),
                          num_classes=C)


def test_detection_task_needs_a_yolo_model():
  with pytest.raises(ValueError, match="model: the detection task needs a YOLO model .* "
                                       "got ResNet"):
    Detection(create_model("resnet18", num_classes=3), 3)
