"""jaxvision.nn.conv: XLA's convolution, or im2col on small CPU output maps; one-block stages
compile without a loop."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxvision.nn import conv, residual
from jaxvision.nn.residual import BasicBranch, ResidualStage

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU dispatch")
DN = ("NHWC", "HWIO", "NHWC")


def hlo(fn, *args) -> str:
  return jax.jit(fn).lower(*args).as_text()


@pytest.mark.parametrize("size,strides,padding,kernel,im2col", [
    (2, 1, 1, 3, True),     # 2x2 output
    (4, 2, 1, 3, True),     # stride 2 to 2x2
    (32, 1, 1, 3, True),    # 32x32 = SMALL_OUTPUT pixels
    (33, 1, 1, 3, False),   # 33x33 = 1089 pixels
    (64, 2, 1, 3, True),    # stride 2 to 32x32
    (4, 1, 0, 1, True),     # 1x1 kernel
    (9, 2, 0, 3, True),     # 4x4, no padding
])
def test_small_outputs_run_as_im2col_with_the_same_result(size, strides, padding, kernel, im2col):
  rs = np.random.RandomState(0)
  x = jnp.asarray(rs.randn(2, size, size, 6), jnp.float32)
  w = jnp.asarray(rs.randn(kernel, kernel, 6, 5), jnp.float32)
  args = ((strides, strides), ((padding, padding), (padding, padding)))
  dn = lax.conv_dimension_numbers(x.shape, w.shape, DN)
  ours = lambda x, w: conv.conv_general_dilated(x, w, *args, dimension_numbers=dn)
  xla = lambda x, w: lax.conv_general_dilated(x, w, *args, dimension_numbers=dn)
  text = hlo(ours, x, w)
  assert ("stablehlo.convolution" not in text) == im2col
  np.testing.assert_allclose(ours(x, w), xla(x, w), rtol=1e-5, atol=1e-5)
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
  for a, b in zip(jax.grad(loss(ours), (0, 1))(x, w), jax.grad(loss(xla), (0, 1))(x, w)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_string_padding_and_dilation_keep_xlas_convolution():
  x, w = jnp.ones((1, 2, 2, 3)), jnp.ones((3, 3, 3, 4))
  dn = lax.conv_dimension_numbers(x.shape, w.shape, DN)
  same = lambda x, w: conv.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn)
  dilated = lambda x, w: conv.conv_general_dilated(x, w, (1, 1), ((2, 2), (2, 2)),
                                                   rhs_dilation=(2, 2), dimension_numbers=dn)
  assert "stablehlo.convolution" in hlo(same, x, w)
  assert "stablehlo.convolution" in hlo(dilated, x, w)


def test_residual_conv_uses_the_dispatch():
  layer = residual.conv(4, 3)
  x = jnp.ones((1, 2, 2, 3))
  variables = layer.init(jax.random.key(0), x)
  assert "stablehlo.convolution" not in hlo(lambda v, x: layer.apply(v, x), variables, x)


@pytest.mark.parametrize("num_blocks,scan_unroll,loop", [(1, None, False), (1, 1, False),
                                                         (3, None, False), (3, 1, True),
                                                         (3, 2, True)])
def test_a_loop_is_compiled_only_when_blocks_stay_rolled(num_blocks, scan_unroll, loop):
  """A one-block stage is no loop even with scan_unroll=1: XLA:CPU runs the backward
  convolutions of a one-trip loop on its slow path."""
  norm = functools.partial(nn.BatchNorm, use_running_average=True)
  block = dict(branch=functools.partial(BasicBranch, features=4, norm=norm), out_features=4,
               norm=norm)
  stage = ResidualStage(block, num_blocks, scan_unroll=scan_unroll)
  x = jnp.ones((1, 6, 6, 4))
  variables = stage.init(jax.random.key(0), x, train=False)
  grad = lambda p, x: jax.grad(lambda p: jnp.sum(stage.apply(
      {"params": p, "batch_stats": variables["batch_stats"]}, x, train=False)))(p)
  assert ("stablehlo.while" in hlo(grad, variables["params"], x)) == loop
