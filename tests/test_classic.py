"""Classic classifiers: torchvision's parameter counts, pooling semantics, dropout, aux heads."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.models import create_model, list_models, model_options
from jaxvision.models.classic import GoogLeNetOutputs, adaptive_avg_pool, max_pool


def shapes(model, size=224):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)),
                                           train=False))


def num_params(model, size=224):
  return sum(x.size for x in jax.tree.leaves(shapes(model, size)["params"]))


# torchvision's published parameter counts (1000 classes).
@pytest.mark.parametrize("name,count", [
    ("alexnet", 61_100_840), ("googlenet", 6_624_904),
    ("vgg11", 132_863_336), ("vgg13", 133_047_848), ("vgg16", 138_357_544),
    ("vgg19", 143_667_240), ("vgg11_bn", 132_868_840), ("vgg13_bn", 133_053_736),
    ("vgg16_bn", 138_365_992), ("vgg19_bn", 143_678_248)])
def test_parameter_counts_equal_torchvision(name, count):
  assert num_params(create_model(name, num_classes=1000)) == count


def test_googlenet_aux_heads_add_torchvisions_aux_parameters():
  model = create_model("googlenet", num_classes=1000, aux_logits=True)
  assert num_params(model) == 13_004_888  # torchvision googlenet(aux_logits=True)
  assert {"aux1", "aux2"} <= set(shapes(model)["params"])


def test_registry_has_the_family_with_the_training_core_options():
  for name in ("alexnet", "googlenet", *(f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn"))):
    assert name in list_models()
    assert {"num_classes", "axis_name", "dtype", "dropout"} <= set(model_options(name))
  assert "batch_norm" not in model_options("vgg16")  # the name picks it


def torch_adaptive_avg_pool(x, out):
  """Reference: torch's AdaptiveAvgPool2d bins on NHWC, one output cell at a time."""
  n, h, w, c = x.shape
  y = np.zeros((n, out[0], out[1], c), np.float64)
  for i in range(out[0]):
    h0, h1 = (i * h) // out[0], -(-((i + 1) * h) // out[0])
    for j in range(out[1]):
      w0, w1 = (j * w) // out[1], -(-((j + 1) * w) // out[1])
      y[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
  return y


@pytest.mark.parametrize("hw,out", [((13, 13), (6, 6)), ((5, 9), (7, 7)), ((1, 1), (6, 6)),
                                    ((7, 7), (7, 7)), ((10, 3), (4, 4))])
def test_adaptive_avg_pool_uses_torchs_bins(hw, out):
  x = np.random.RandomState(0).randn(2, *hw, 3).astype(np.float32)
  np.testing.assert_allclose(adaptive_avg_pool(jnp.asarray(x), out), torch_adaptive_avg_pool(x, out),
                             rtol=1e-5, atol=1e-6)


def torch_max_pool(x, k, s, p, ceil_mode):
  """Reference: torch's MaxPool2d output size rule and -inf padding, on NHWC."""
  n, h, w, c = x.shape

  def size(length):
    out = (-(-(length + 2 * p - k) // s) if ceil_mode else (length + 2 * p - k) // s) + 1
    return out - 1 if ceil_mode and (out - 1) * s >= length + p else out

  y = np.full((n, size(h), size(w), c), -np.inf)
  for i in range(y.shape[1]):
    for j in range(y.shape[2]):
      rows = slice(max(i * s - p, 0), min(i * s - p + k, h))
      cols = slice(max(j * s - p, 0), min(j * s - p + k, w))
      y[:, i, j] = x[:, rows, cols].max(axis=(1, 2))
  return y


@pytest.mark.parametrize("hw,k,s,p,ceil_mode", [
    ((112, 112), 3, 2, 0, True), ((14, 14), 2, 2, 0, True), ((7, 7), 2, 2, 0, True),
    ((9, 10), 3, 2, 0, True), ((8, 8), 3, 1, 1, True), ((55, 55), 3, 2, 0, False),
    ((6, 6), 3, 3, 1, True)])  # the last: a ceil-mode window that torch drops
def test_max_pool_matches_torch_including_ceil_mode(hw, k, s, p, ceil_mode):
  x = np.random.RandomState(1).randn(1, *hw, 2).astype(np.float32)
  expected = torch_max_pool(x, k, s, p, ceil_mode)
  got = max_pool(jnp.asarray(x), k, s, p, ceil_mode=ceil_mode)
  assert got.shape == expected.shape
  np.testing.assert_array_equal(got, expected)


@pytest.fixture(scope="module")
def alexnet():
  model = create_model("alexnet", num_classes=5)
  x = jnp.asarray(np.random.RandomState(2).randn(2, 67, 67, 3), jnp.float32)
  variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), x)
  apply = jax.jit(model.apply, static_argnames="train")
  return apply, variables, x


def test_dropout_draws_from_the_dropout_stream_in_training_only(alexnet):
  apply, v, x = alexnet
  a = apply(v, x, train=True, rngs={"dropout": jax.random.key(1)})
  b = apply(v, x, train=True, rngs={"dropout": jax.random.key(2)})
  again = apply(v, x, train=True, rngs={"dropout": jax.random.key(1)})
  assert a.shape == (2, 5) and a.dtype == jnp.float32
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(a, again)
  np.testing.assert_array_equal(apply(v, x, train=False), apply(v, x, train=False))
  with pytest.raises(Exception, match="dropout"):
    apply(v, x, train=True)


def test_too_small_input_is_a_clear_error():
  with pytest.raises(ValueError, match=r"input image is too small.*3x3 max-pool"):
    shapes(create_model("alexnet", num_classes=10), size=32)


def test_googlenet_aux_heads_in_training_and_logits_in_eval():
  model = create_model("googlenet", num_classes=4, aux_logits=True, dtype=jnp.bfloat16)
  x = jnp.zeros((2, 40, 40, 3))
  v = shapes(model, size=40)
  out, updates = jax.eval_shape(lambda v: model.apply(
      v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)}), v)
  assert isinstance(out, GoogLeNetOutputs)
  assert [(o.shape, o.dtype) for o in out] == [((2, 4), jnp.float32)] * 3
  assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(v["batch_stats"])
  assert {a.dtype for a in jax.tree.leaves(v["params"])} == {jnp.dtype(jnp.float32)}
  logits = jax.eval_shape(lambda v: model.apply(v, x, train=False), v)
  assert (logits.shape, logits.dtype) == ((2, 4), jnp.float32)


def test_googlenet_transform_input_needs_rgb():
  with pytest.raises(ValueError, match=r"transform_input=True expects 3 \(RGB\) channels"):
    jax.eval_shape(lambda: create_model("googlenet", num_classes=3, transform_input=True).init(
        jax.random.key(0), jnp.zeros((1, 64, 64, 1)), train=False))
