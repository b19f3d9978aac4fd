"""`fully_convolutional` on AlexNet and VGG (the lecture's example): fc6 a 6x6 / 7x7 convolution
over pool5 with the Linear kernel reshaped, fc7 and fc8 1x1. On the training size the score map
is one cell equal to the logits; on a larger image every cell is the classifier's head on the
corresponding 6x6 / 7x7 window of pool5 (stride 32 in the image for VGG)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.models import create_model, fully_convolutional
from jaxvision.models.classic import VGG, AlexNet, dense_to_conv_kernel, torch_flatten

TINY_VGG = (4, "M", 8, "M")  # pool5 (its last max-pool) at stride 4: 7x7 on 28x28 images


def variables(model, size, seed=0):
  """Seeded variables of `model` without an init compile: kernels ~ N(0, 1/fan_in), biases and
  BatchNorm shifts and means ~ N(0, 0.05^2), scales and variances ~ U(0.8, 1.2)."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)),
                                             train=False))
  rng = np.random.default_rng(seed)
  def fill(path, s):
    leaf = path[-1].key
    if leaf == "kernel":
      return rng.standard_normal(s.shape, np.float32) / np.sqrt(np.prod(s.shape[:-1]))
    if leaf in ("scale", "var"):
      return rng.uniform(0.8, 1.2, s.shape).astype(np.float32)
    return 0.05 * rng.standard_normal(s.shape, np.float32)
  return jax.tree_util.tree_map_with_path(fill, shapes)


def head_on_window(params, window, hidden):
  """The classifier's Linear layers by hand on one pool5 window [B, k, k, C] (torch flatten);
  `hidden`: the indices of fc6 and fc7 in torch's `classifier` Sequential."""
  x = torch_flatten(window)
  for i in hidden:
    x = jax.nn.relu(x @ params[f"classifier_{i}"]["kernel"] + params[f"classifier_{i}"]["bias"])
  return x @ params["classifier_6"]["kernel"] + params["classifier_6"]["bias"]


CASES = {
    "vgg": (functools.partial(VGG, layers=TINY_VGG), 28, (36, 40), (0, 3)),
    "vgg_bn": (functools.partial(VGG, layers=TINY_VGG, batch_norm=True), 28, (32, 44), (0, 3)),
    "alexnet": (AlexNet, 224, (256, 256), (1, 4)),  # 6x6 pool5 on 224x224, 7x7 on 256x256
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_cell_on_the_training_size_and_a_score_map_of_windows_beyond(case):
  build, size, big, hidden = CASES[case]
  model = build(num_classes=5, classifier_width=16)
  v = variables(model, size)
  fcn, fv = fully_convolutional(model, v, (size, size, 3))
  k = model.pool_size[0]
  assert fv["params"]["head"]["kernel"].shape == (1, 1, 16, 5)  # fc8 as a 1x1 convolution
  assert "classifier_6" not in fv["params"]["classifier"]

  @jax.jit
  def run(v, fv, x, image):
    pool5 = model.apply(v, image, train=False, features=True)[-3]
    return (model.apply(v, x, train=False), fcn.apply(fv, x, train=False), pool5,
            fcn.apply(fv, image, train=False))

  x = jax.random.normal(jax.random.key(1), (2, size, size, 3))
  image = jax.random.normal(jax.random.key(2), (1, *big, 3))
  logits, scores, pool5, score_map = run(v, fv, x, image)
  assert scores.shape == (2, 1, 1, 5)
  np.testing.assert_allclose(scores[:, 0, 0], logits, rtol=1e-4, atol=1e-5)
  # A larger image: one score per k x k window of its pool5 map.
  rows, cols = pool5.shape[1] - k + 1, pool5.shape[2] - k + 1
  assert score_map.shape == (1, rows, cols, 5) and rows * cols > 1
  for i in range(rows):
    for j in range(cols):
      want = head_on_window(v["params"], pool5[:, i:i + k, j:j + k], hidden)
      np.testing.assert_allclose(score_map[:, i, j], want, rtol=1e-4, atol=1e-5)


def test_shifting_the_image_by_the_stride_shifts_the_score_map_by_a_cell():
  # On an image periodic with the trunk's stride (4 here, 32 for VGG-16) every window away from
  # the zero padding of the border sees the same content, so those cells are all equal.
  model = VGG(layers=TINY_VGG, num_classes=3, classifier_width=8)
  fcn, fv = fully_convolutional(model, variables(model, 28))
  tile = jax.random.normal(jax.random.key(3), (1, 4, 4, 3))
  score_map = jax.jit(functools.partial(fcn.apply, train=False))(fv, jnp.tile(tile, (1, 16, 16, 1)))
  assert score_map.shape == (1, 10, 10, 3)
  interior = score_map[:, 1:-1, 1:-1]
  np.testing.assert_allclose(interior, jnp.broadcast_to(interior[:, :1, :1], interior.shape),
                             rtol=1e-4, atol=1e-5)
  assert not np.allclose(score_map[:, 0, 0], interior[:, 0, 0], rtol=1e-4, atol=1e-5)  # the border


def test_dense_to_conv_kernel_follows_torch_flatten():
  kernel = jnp.arange(2 * 3 * 3 * 4, dtype=jnp.float32).reshape(18, 4)
  window = jax.random.normal(jax.random.key(4), (1, 3, 3, 2))
  conv = jax.lax.conv_general_dilated(window, dense_to_conv_kernel(kernel, (3, 3)), (1, 1), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(conv[:, 0, 0], torch_flatten(window) @ kernel, rtol=1e-6)
  with pytest.raises(ValueError, match=r"kernel: expected a Linear kernel \[C \* 3 \* 3, out\], got shape \(10, 4\)"):
    dense_to_conv_kernel(kernel[:10], (3, 3))


def test_full_size_vgg16_and_alexnet_by_eval_shape():
  for name, size, big, cells in (("vgg16", 224, 384, 6), ("vgg16_bn", 224, 256, 2),
                                 ("alexnet", 224, 256, 2)):
    model = create_model(name, num_classes=1000)
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))
    box = {}
    fv = jax.eval_shape(lambda v: box.setdefault("fcn", fully_convolutional(model, v))[1], v)
    fcn = box["fcn"][0]
    assert fv["params"]["head"]["kernel"].shape == (1, 1, 4096, 1000)
    # The classifier's fc6/fc7 parameters stay as they are (Linear-shaped): no copy, no reshape.
    fc6 = "classifier_1" if name == "alexnet" else "classifier_0"
    assert fv["params"]["classifier"][fc6]["kernel"].shape == v["params"][fc6]["kernel"].shape
    for side, n in ((size, 1), (big, cells)):
      out = jax.eval_shape(lambda fv: fcn.apply(fv, jnp.zeros((1, side, side, 3)), train=False), fv)
      assert out.shape == (1, n, n, 1000), (name, side)


def test_training_size_must_give_the_adaptive_pools_size():
  model = VGG(layers=TINY_VGG, num_classes=3, classifier_width=8)
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 3)), train=False))
  with pytest.raises(ValueError, match=r"image_shape: \(8, 8, 3\) gives a 2x2 pool5 map; VGG's fc6 "
                                       r"is a 7x7 convolution only where"):
    fully_convolutional(model, v, (8, 8, 3))
  box = {}
  fv = jax.eval_shape(lambda v: box.setdefault("f", fully_convolutional(model, v))[1], v)
  with pytest.raises(ValueError, match=r"x: the feature map of shape \(1, 2, 2, 8\) is smaller than "
                                       r"the head's window \(7, 7\)"):
    jax.eval_shape(lambda fv: box["f"][0].apply(fv, jnp.zeros((1, 8, 8, 3)), train=False), fv)
  with pytest.raises(ValueError, match=r"variables: expected VGG's parameters with the Linear head "
                                       r"'classifier_6'"):
    fully_convolutional(model, {"params": {}})
