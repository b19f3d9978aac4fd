"""In-network upsampling layers: the lecture's examples, torch.nn.ConvTranspose2d semantics
(sizes, the adjoint of a strided convolution, Flax's transpose_kernel form), bilinear init."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.nn import upsample as U

# Jitted once per configuration: one compilation instead of one per eager op.
tconv = jax.jit(U.transpose_conv, static_argnums=(2, 3, 4), static_argnames="feature_group_count")
pool = jax.jit(U.max_pool_with_argmax, static_argnums=(1, 2, 3))
unpool = jax.jit(U.max_unpool, static_argnums=2)
bilinear_upsample = jax.jit(U.bilinear_upsample, static_argnums=1)


def nhwc(a):
  """A 2-D list as a [1, H, W, 1] float32 batch."""
  return jnp.asarray(a, jnp.float32)[None, :, :, None]


def test_nearest_and_bed_of_nails():
  x = nhwc([[1, 2], [3, 4]])
  np.testing.assert_array_equal(jax.jit(U.nearest_upsample)(x)[0, ..., 0],
                                [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
  np.testing.assert_array_equal(jax.jit(U.bed_of_nails)(x)[0, ..., 0],
                                [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]])
  np.testing.assert_array_equal(jax.jit(U.bed_of_nails, static_argnums=1)(x, (1, 3))[0, ..., 0],
                                [[1, 0, 0, 2, 0, 0], [3, 0, 0, 4, 0, 0]])
  up = jax.eval_shape(lambda x: U.nearest_upsample(x, (2, 3)), jnp.zeros((2, 3, 5, 4)))
  assert up.shape == (2, 6, 15, 4)


LECTURE_INPUT = [[1, 2, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]]


def test_lecture_max_pool_and_max_unpool():
  values, indices = pool(nhwc(LECTURE_INPUT), 2, 2)
  np.testing.assert_array_equal(values[0, ..., 0], [[5, 6], [7, 8]])
  np.testing.assert_array_equal(indices[0, ..., 0], [[1 * 4 + 1, 0 * 4 + 2], [3 * 4 + 0, 3 * 4 + 3]])
  out = unpool(nhwc([[1, 2], [3, 4]]), indices, (4, 4))
  np.testing.assert_array_equal(out[0, ..., 0],
                                [[0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]])


def numpy_max_pool(x, k, s, p):
  """Reference: loops over windows; first maximum in row-major order; -inf padding."""
  b, h, w, c = x.shape
  oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
  values = np.zeros((b, oh, ow, c), x.dtype)
  indices = np.zeros((b, oh, ow, c), np.int64)
  for n, i, j, ch in itertools.product(range(b), range(oh), range(ow), range(c)):
    best, where = -np.inf, None
    for a, bb in itertools.product(range(k), range(k)):
      r, col = i * s + a - p, j * s + bb - p
      if 0 <= r < h and 0 <= col < w and x[n, r, col, ch] > best:
        best, where = x[n, r, col, ch], r * w + col
    values[n, i, j, ch], indices[n, i, j, ch] = best, where
  return values, indices


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0)])
def test_max_pool_with_argmax_matches_a_loop_reference(k, s, p):
  # Integers in a small range: many ties, which must resolve to the first maximum (as torch).
  x = np.random.RandomState(k * 10 + s).randint(0, 4, (2, 7, 6, 3)).astype(np.float32)
  values, indices = jax.jit(lambda x: pool(x, k, s, p))(x)
  ref_values, ref_indices = numpy_max_pool(x, k, s, p)
  np.testing.assert_array_equal(values, ref_values)
  np.testing.assert_array_equal(indices, ref_indices)


def test_pool_and_unpool_batched_multichannel_jit_and_grad():
  x = jax.random.normal(jax.random.key(0), (3, 8, 6, 5))
  values, indices = jax.jit(U.max_pool_with_argmax)(x)
  assert values.shape == indices.shape == (3, 4, 3, 5) and indices.dtype == jnp.int32
  # Unpooling the pooled values restores every maximum in place and zeros elsewhere.
  restored = jax.jit(U.max_unpool, static_argnums=2)(values, indices, (8, 6))
  kept = restored != 0
  np.testing.assert_array_equal(restored[kept], x[kept])
  assert int(kept.sum()) == values.size
  # The gradient of pooling sends each upstream value to its argmax: it is max-unpooling.
  g = jax.random.normal(jax.random.key(1), values.shape)
  grad_x = jax.grad(lambda x: jnp.sum(pool(x)[0] * g))(x)
  np.testing.assert_allclose(grad_x, unpool(g, indices, (8, 6)), rtol=0, atol=0)
  # ...and the gradient of unpooling gathers the upstream values at the positions.
  up = jax.random.normal(jax.random.key(2), x.shape)
  grad_v = jax.grad(lambda v: jnp.sum(unpool(v, indices, (8, 6)) * up))(values)
  flat = up.reshape(3, 48, 5)
  expected = jnp.take_along_axis(flat, indices.reshape(3, 12, 5), axis=1).reshape(values.shape)
  np.testing.assert_array_equal(grad_v, expected)


def test_transpose_conv_lecture_1d_example():
  # Input [a, b], filter [x, y, z], stride 2: the output holds copies of the filter weighted by
  # the input, summed where they overlap: [ax, ay, az + bx, by, bz].
  a, b = 2.0, 3.0
  x, y, z = 5.0, 7.0, 11.0
  out = tconv(nhwc([[a, b]]), jnp.array([x, y, z])[None, :, None, None], (1, 2))
  np.testing.assert_array_equal(out[0, 0, :, 0], [a * x, a * y, a * z + b * x, b * y, b * z])


def test_lecture_3x3_stride_2_pad_1_turns_2x2_into_4x4():
  # Output pixel 2i + a - 1 receives x[i] * w[a]; with ones, rows 0..3 receive 1, 2, 1, 1
  # contributions (row 3 exists only thanks to output_padding 1), so the map is their outer product.
  out = tconv(jnp.ones((1, 2, 2, 1)), jnp.ones((3, 3, 1, 1)), 2, 1, 1)
  assert out.shape == (1, 4, 4, 1)
  np.testing.assert_array_equal(out[0, ..., 0], np.outer([1, 2, 1, 1], [1, 2, 1, 1]))
  assert tconv(jnp.ones((1, 2, 2, 1)), jnp.ones((3, 3, 1, 1)), 2, 1, 0).shape == (1, 3, 3, 1)


@pytest.mark.parametrize("size,k,s,p,op,expected", [
    (2, 3, 2, 1, 1, 4), (2, 3, 2, 1, 0, 3), (5, 4, 2, 1, 0, 10), (3, 3, 1, 1, 0, 3),
    (7, 16, 8, 4, 0, 56), (1, 64, 32, 16, 0, 32), (4, 2, 2, 0, 1, 9), (3, 5, 3, 2, 2, 9)])
def test_output_size_follows_torch_conv_transpose2d(size, k, s, p, op, expected):
  # (size - 1) * s - 2p + k + op, worked out by hand for each row.
  assert U.transpose_conv_output_size(size, k, s, p, op) == expected
  out = tconv(jnp.ones((1, size, size, 2)), jnp.ones((k, k, 2, 3)), s, p, op)
  assert out.shape == (1, expected, expected, 3)


CASES = [(1, 1, 0, 0), (2, 2, 0, 1), (3, 1, 1, 0), (3, 2, 1, 1), (3, 2, 0, 0), (4, 2, 1, 0),
         (4, 2, 1, 1), (5, 3, 2, 2), (5, 2, 2, 1), (4, 3, 3, 0)]


def test_transpose_conv_is_the_adjoint_of_the_strided_convolution():
  # torch: ConvTranspose2d is the gradient of Conv2d with the same kernel, stride and padding;
  # output_padding only picks which of the conv's possible input sizes is restored.
  for k, s, p, op in CASES:
    x = jax.random.normal(jax.random.key(k * 100 + s * 10 + p), (2, 4, 3, 3))
    w = jax.random.normal(jax.random.key(op), (k, k, 3, 2))
    out_h, out_w = (U.transpose_conv_output_size(n, k, s, p, op) for n in (4, 3))

    def conv(y):  # [2, out_h, out_w, 2] -> [2, 4, 3, 3], kernel used as [kh, kw, out, in]
      return jax.lax.conv_general_dilated(y, jnp.transpose(w, (0, 1, 3, 2)), (s, s),
                                          [(p, p), (p, p)], dimension_numbers=("NHWC", "HWIO", "NHWC"))

    y0 = jnp.zeros((2, out_h, out_w, 2))
    assert conv(y0).shape == x.shape, (k, s, p, op)
    _, vjp = jax.vjp(conv, y0)
    np.testing.assert_allclose(tconv(x, w, s, p, op), vjp(x)[0], rtol=1e-5, atol=1e-5,
                               err_msg=str((k, s, p, op)))


@pytest.mark.parametrize("k,s,p,op", [(3, 2, 1, 1), (4, 2, 1, 0), (5, 3, 2, 2), (2, 2, 0, 0)])
def test_transpose_conv_matches_flax_with_transposed_kernel_and_torch_padding(k, s, p, op):
  # FIELD_NOTES: Flax reproduces torch with transpose_kernel=True and padding (k-1-p, k-1-p+op);
  # its kernel is [kh, kw, out, in].
  x = jax.random.normal(jax.random.key(0), (2, 5, 4, 6))
  ref = nn.ConvTranspose(3, (k, k), (s, s), padding=((k - 1 - p, k - 1 - p + op),) * 2,
                         transpose_kernel=True, use_bias=False)
  v = jax.jit(ref.init)(jax.random.key(1), x)
  ours = tconv(x, jnp.transpose(v["params"]["kernel"], (0, 1, 3, 2)), s, p, op)
  np.testing.assert_allclose(ours, jax.jit(ref.apply)(v, x), rtol=1e-5, atol=1e-5)


def test_grouped_transpose_conv_is_per_group():
  x = jax.random.normal(jax.random.key(0), (1, 3, 3, 4))
  w = jax.random.normal(jax.random.key(1), (3, 3, 2, 6))  # 2 groups: 2 -> 3 channels each
  out = tconv(x, w, 2, 1, 1, feature_group_count=2)
  first = tconv(x[..., :2], w[..., :3], 2, 1, 1)
  second = tconv(x[..., 2:], w[..., 3:], 2, 1, 1)
  np.testing.assert_allclose(out, jnp.concatenate([first, second], -1), rtol=1e-6, atol=1e-6)


def test_bilinear_filter_is_long_et_al():
  # factor 2, centre 1.5: 1 - |i - 1.5| / 2; odd size 3: factor 2, centre 1.
  np.testing.assert_allclose(U.bilinear_filter(4), np.outer(*[[0.25, 0.75, 0.75, 0.25]] * 2))
  np.testing.assert_allclose(U.bilinear_filter(3), np.outer(*[[0.5, 1.0, 0.5]] * 2))
  kernel = U.bilinear_kernel(4, 3, 2)
  assert kernel.shape == (4, 4, 3, 2)
  np.testing.assert_allclose(kernel[:, :, 1, 1], U.bilinear_filter(4))
  assert kernel[:, :, 0, 1].sum() == 0 and kernel[:, :, 2].sum() == 0  # channel i -> i only


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_bilinear_upsample_is_bilinear_resizing_away_from_the_border(factor):
  x = jax.random.normal(jax.random.key(factor), (2, 5, 6, 3))
  up = bilinear_upsample(x, factor)
  assert up.shape == (2, 5 * factor, 6 * factor, 3)
  ref = jax.image.resize(x, up.shape, "bilinear")
  f = factor
  np.testing.assert_allclose(up[:, f:-f, f:-f], ref[:, f:-f, f:-f], rtol=1e-5, atol=1e-5)


def test_conv_transpose_module_bilinear_init_and_dtype():
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
  m = U.ConvTranspose(3, 4, 2, 1, bilinear=True, use_bias=False)
  v = jax.jit(m.init)(jax.random.key(1), x)
  np.testing.assert_array_equal(v["params"]["kernel"], U.bilinear_kernel(4, 3, 3))
  np.testing.assert_allclose(jax.jit(m.apply)(v, x), bilinear_upsample(x, 2), rtol=1e-6, atol=1e-6)
  half = U.ConvTranspose(5, 3, 2, 1, 1, dtype=jnp.bfloat16)
  hv = jax.jit(half.init)(jax.random.key(1), x)
  assert hv["params"]["kernel"].dtype == jnp.float32 and hv["params"]["bias"].shape == (5,)
  out = jax.jit(half.apply)(hv, x)
  assert out.dtype == jnp.bfloat16 and out.shape == (2, 8, 8, 5)


@pytest.mark.parametrize("call,err,match", [
    (lambda: U.transpose_conv(jnp.ones((1, 2, 2, 1)), jnp.ones((3, 3, 1, 1)), 2, 1, 2),
     ValueError, r"output_padding: expected 0 <= output_padding < stride \(2, 2\).*got \(2, 2\)"),
    (lambda: U.transpose_conv(jnp.ones((1, 2, 2, 1)), jnp.ones((3, 3, 1, 1)), 2, -1),
     ValueError, r"padding: expected values >= 0, got \(-1, -1\)"),
    (lambda: U.transpose_conv(jnp.ones((1, 2, 2, 2)), jnp.ones((3, 3, 1, 1)), 2),
     ValueError, r"x: expected 1 channels .* got shape \(1, 2, 2, 2\)"),
    (lambda: U.max_unpool(jnp.ones((1, 2, 2, 1)), jnp.zeros((1, 2, 2, 2), jnp.int32), (4, 4)),
     ValueError, r"indices: expected the shape of x \(1, 2, 2, 1\), got \(1, 2, 2, 2\)"),
    (lambda: U.max_unpool(jnp.ones((1, 2, 2, 1)), jnp.zeros((1, 2, 2, 1)), (4, 4)),
     TypeError, "indices: expected integer positions, got dtype float32"),
    (lambda: U.max_pool_with_argmax(jnp.ones((4, 4, 1))), ValueError, r"x: expected images of rank 4"),
    (lambda: U.max_pool_with_argmax(jnp.ones((1, 4, 4, 1)), 3, 1, 2),
     ValueError, r"padding: expected at most half the window"),
    (lambda: U.nearest_upsample(jnp.ones((1, 4, 4, 1)), 0), ValueError, "factor: expected positive"),
])
def test_bad_arguments_are_named(call, err, match):
  with pytest.raises(err, match=match):
    call()


@pytest.mark.parametrize("factor", [2, 3, 8])
def test_bilinear_upsample_is_the_per_channel_bilinear_transpose_conv(factor):
  x = jax.random.normal(jax.random.key(0), (2, 5, 4, 3))
  kernel, padding = U.upsample_geometry(factor)
  weights = jnp.broadcast_to(jnp.asarray(U.bilinear_filter(kernel))[:, :, None, None],
                             (kernel, kernel, 1, 3))
  expected = tconv(x, weights, factor, padding, 0, feature_group_count=3)
  np.testing.assert_allclose(bilinear_upsample(x, factor), expected, rtol=1e-5, atol=1e-5)
