"""jaxvision.ops against torchvision's own outputs (tests/fixtures/torchvision_ops.npz, written by
tests/fixtures/make_torchvision_fixtures.py with torch; no torch needed here): torchvision's
test_ops.py cases and random edge cases for RoIAlign / RoI pooling (forward and the features'
gradient), NMS / batched NMS and box areas / IoU / GIoU."""

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import ops

OPS = np.load(pathlib.Path(__file__).parent / "fixtures" / "torchvision_ops.npz")


def cases(prefix):
  return sorted({k.rsplit("/", 1)[0] for k in OPS.files if k.startswith(prefix + "/")})


def fields(case):
  return {k.rsplit("/", 1)[1]: OPS[k] for k in OPS.files if k.rsplit("/", 1)[0] == case}


def test_the_fixture_holds_every_kind_of_case():
  assert len(cases("roi_align")) == 35 and len(cases("roi_pool")) == 11
  assert len(cases("nms")) == 8 and len(cases("boxes")) == 10


def adaptive_bound(c):
  """The largest ceil(RoI side / bins) torchvision used (so no RoI is short of samples)."""
  if c["sampling_ratio"] > 0:
    return None
  scaled = c["rois"][:, 1:].astype(np.float64) * float(c["spatial_scale"])
  sides = scaled[:, 2:] - scaled[:, :2]
  if not c["aligned"]:
    sides = np.maximum(sides, 1.0)
  return max(1, int(np.ceil(sides / c["output_size"][::-1]).max()))


def per_image(op, c):
  """op over each image's RoIs (torchvision's [N, 5] rois) -> [N, C, out_h, out_w], and the
  gradient of sum(out * cotangent) w.r.t. the features (NCHW), both as torchvision lays them."""
  rois = c["rois"]
  images = rois[:, 0].astype(int)
  assert (np.diff(images) >= 0).all()

  def run(features):
    outs = [op(features[b:b + 1], jnp.asarray(rois[images == b, 1:])[None])[0]
            for b in np.unique(images)]
    return jnp.concatenate(outs).transpose(0, 3, 1, 2)  # [N, C, h, w]

  features = jnp.asarray(c["features"].transpose(0, 2, 3, 1))
  out, vjp = jax.vjp(jax.jit(run), features)
  (grad,) = vjp(jnp.asarray(c["cotangent"]))
  return np.asarray(out), np.asarray(grad).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("case", cases("roi_align"))
def test_roi_align_matches_torchvision(case):
  c = fields(case)
  op = functools.partial(ops.roi_align, output_size=tuple(c["output_size"]),
                         spatial_scale=float(c["spatial_scale"]),
                         sampling_ratio=int(c["sampling_ratio"]), aligned=bool(c["aligned"]),
                         max_sampling_ratio=adaptive_bound(c))
  out, grad = per_image(op, c)
  np.testing.assert_allclose(out, c["out"], rtol=1e-5, atol=2e-6)
  np.testing.assert_allclose(grad, c["grad"], rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("case", cases("roi_pool"))
def test_roi_pool_matches_torchvision_exactly(case):
  c = fields(case)
  op = functools.partial(ops.roi_pool, output_size=tuple(c["output_size"]),
                         spatial_scale=float(c["spatial_scale"]))
  out, grad = per_image(op, c)
  np.testing.assert_array_equal(out, c["out"])  # the same cells, so the same maxima
  # Each bin's cotangent goes to the same (first) maximum; sums may round in another order.
  np.testing.assert_allclose(grad, c["grad"], rtol=1e-6, atol=1e-6)


def test_the_float32_edge_cases_are_in_the_fixture():
  # 57 cells in 7 bins: torchvision's last bin ends at 58 (7 * fl(57 / 7) > 57), not 57.
  assert np.float32(7) * (np.float32(57) / np.float32(7)) > 57
  edges = [c for c in cases("roi_pool") if "float32_edges" in c]
  sides = {int(s) for c in edges for s in (fields(c)["rois"][:, 3:] - fields(c)["rois"][:, 1:3]).ravel() + 1}
  assert {57, 13, 26} <= sides


def kept(indices, valid):
  return np.asarray(indices)[np.asarray(valid)]


@pytest.mark.parametrize("case", cases("nms"))
def test_nms_and_batched_nms_match_torchvision(case):
  c = fields(case)
  boxes, scores, threshold = c["boxes"], c["scores"], float(c["iou_threshold"])
  n = len(boxes)
  if "keep" in c:
    np.testing.assert_array_equal(kept(*ops.nms(boxes, scores, threshold, n)), c["keep"])
  if "batched_keep" in c:
    np.testing.assert_array_equal(
        kept(*ops.batched_nms(boxes, scores, c["classes"], threshold, n)), c["batched_keep"])


def test_the_nms_cases_hold_ious_exactly_at_the_threshold_and_tied_scores():
  c = fields("nms/exact_0")
  iou = np.asarray(ops.box_iou(c["boxes"], c["boxes"]))
  assert (iou == 0.5).sum() > 10 and len(np.unique(c["scores"])) == 4


@pytest.mark.parametrize("case", cases("boxes"))
def test_box_area_iou_and_giou_match_torchvision(case):
  c = fields(case)
  area = np.asarray(ops.area(c["a"]))
  if np.issubdtype(c["a"].dtype, np.integer):
    assert np.issubdtype(area.dtype, np.integer)
    np.testing.assert_array_equal(area, c["area"])
  else:
    np.testing.assert_allclose(area, c["area"].astype(np.float32), rtol=1e-6)
  # torchvision subtracts float16 corners before it upcasts (jaxvision upcasts first), so its
  # float16 IoUs are float16-rounded (1.0009 for a box with itself): its own tests allow 2e-3.
  atol = 2e-3 if c["a"].dtype == np.float16 else 1e-7
  np.testing.assert_allclose(ops.box_iou(c["a"], c["b"]), c["box_iou"], rtol=1e-6, atol=atol)
  np.testing.assert_allclose(ops.generalized_box_iou(c["a"], c["b"]), c["generalized_box_iou"],
                             rtol=1e-6, atol=atol)
