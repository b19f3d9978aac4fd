"""In-network upsampling ("unpooling"), NHWC, as the lecture draws it.

- `nearest_upsample`: every value copied into a k x k block.
- `bed_of_nails`: every value in the top-left corner of a k x k block, zeros elsewhere.
- `max_pool_with_argmax` / `max_unpool`: max pooling that remembers where each maximum was
  (flat index `row * W + col` into the input's H x W plane, per image and channel, as
  `torch.nn.MaxPool2d(return_indices=True)`), and the unpooling that puts values back there.
- `ConvTranspose` / `transpose_conv`: transpose convolution with the stride, padding and
  output padding of `torch.nn.ConvTranspose2d`: output size `(n - 1) * s - 2p + k + op`. The
  kernel [kh, kw, in, out] is read "scatter-wise": input pixel i adds `x[i] * kernel[a]` to
  output pixel `s * i + a - p` (torch's weight [in, out, kh, kw] transposed to (2, 3, 0, 1)).
- `bilinear_kernel` / `bilinear_init` / `bilinear_upsample`: Long et al. 2015's bilinear
  initialisation, and a fixed bilinear upsampling by an integer factor.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.nn.checks import check_images

def _pair(value, name: str) -> tuple[int, int]:
  pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
  if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
    raise ValueError(f"{name}: expected an int or a pair of ints, got {value!r}")
  return int(pair[0]), int(pair[1])


def _positive(value, name: str) -> tuple[int, int]:
  pair = _pair(value, name)
  if min(pair) < 1:
    raise ValueError(f"{name}: expected positive sizes, got {value!r}")
  return pair


def nearest_upsample(x, factor: int | Sequence[int] = 2):
  """Nearest-neighbour unpooling: each pixel becomes a `factor` x `factor` block of copies."""
  check_images(x)
  fh, fw = _positive(factor, "factor")
  return jnp.repeat(jnp.repeat(x, fh, axis=1), fw, axis=2)


def bed_of_nails(x, factor: int | Sequence[int] = 2):
  """"Bed of nails" unpooling: each pixel in the top-left of a `factor` x `factor` block of zeros."""
  check_images(x)
  fh, fw = _positive(factor, "factor")
  b, h, w, c = x.shape
  out = jnp.zeros((b, h, fh, w, fw, c), x.dtype).at[:, :, 0, :, 0, :].set(x)
  return out.reshape(b, h * fh, w * fw, c)


def max_pool_with_argmax(x, window: int | Sequence[int] = 2, strides=None, padding=0):
  """Max pooling that also returns where each maximum was.

  Args:
    x: [B, H, W, C].
    window: pooling window (kh, kw).
    strides: (sh, sw); defaults to `window`.
    padding: (ph, pw) rows/columns of -inf added on each side.

  Returns:
    (values [B, h, w, C], indices int32 [B, h, w, C]) with `indices = row * W + col` in the
    unpadded input, the first maximum in row-major window order on ties (as torch). The
    gradient of `values` flows to the selected positions only.
  """
  check_images(x)
  kh, kw = _positive(window, "window")
  sh, sw = _positive(window if strides is None else strides, "strides")
  ph, pw = _pair(padding, "padding")
  if not (0 <= ph <= kh // 2 and 0 <= pw <= kw // 2):
    raise ValueError(f"padding: expected at most half the window {(kh, kw)} on each side, got "
                     f"{(ph, pw)}")
  _, height, width, _ = x.shape
  oh, ow = (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
  if oh < 1 or ow < 1:
    raise ValueError(f"x: spatial size {(height, width)} is smaller than the window {(kh, kw)}")
  xp = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=-jnp.inf)
  # One strided view per window offset (a, b): candidates [B, oh, ow, C, kh * kw].
  candidates = jnp.stack([xp[:, a:a + sh * (oh - 1) + 1:sh, b:b + sw * (ow - 1) + 1:sw, :]
                          for a in range(kh) for b in range(kw)], axis=-1)
  best = jnp.argmax(candidates, axis=-1)
  values = jnp.take_along_axis(candidates, best[..., None], axis=-1)[..., 0]
  rows = jnp.arange(oh)[:, None, None] * sh + best // kw - ph
  cols = jnp.arange(ow)[None, :, None] * sw + best % kw - pw
  return values, (rows * width + cols).astype(jnp.int32)


def max_unpool(x, indices, output_size: Sequence[int]):
  """Max unpooling: puts each value of `x` at its position in `indices`, zeros elsewhere.

  Args:
    x: [B, h, w, C] values (e.g. a decoder's feature map).
    indices: integer [B, h, w, C] from `max_pool_with_argmax`, flat `row * W + col`.
    output_size: (H, W) of the map that was pooled.

  Returns:
    [B, H, W, C]. Where overlapping windows picked the same position, one value is kept.
  """
  check_images(x)
  height, width = _positive(output_size, "output_size")
  if tuple(indices.shape) != tuple(x.shape):
    raise ValueError(f"indices: expected the shape of x {tuple(x.shape)}, got {tuple(indices.shape)}")
  if not jnp.issubdtype(indices.dtype, jnp.integer):
    raise TypeError(f"indices: expected integer positions, got dtype {indices.dtype}")
  b, h, w, c = x.shape
  flat = jnp.zeros((b, height * width, c), x.dtype)
  batch = jnp.arange(b)[:, None, None]
  channel = jnp.arange(c)[None, None, :]
  flat = flat.at[batch, indices.reshape(b, h * w, c), channel].set(x.reshape(b, h * w, c))
  return flat.reshape(b, height, width, c)


def transpose_conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                               output_padding: int = 0) -> int:
  """`torch.nn.ConvTranspose2d`'s output size: (size - 1) * stride - 2 * padding + kernel + op."""
  return (size - 1) * stride - 2 * padding + kernel + output_padding


def _check_transpose_args(kernel, strides, padding, output_padding):
  for k, s, p, op in zip(kernel, strides, padding, output_padding):
    if p < 0:
      raise ValueError(f"padding: expected values >= 0, got {padding}")
    if p > k - 1:
      raise ValueError(f"padding: expected at most kernel_size - 1 = {k - 1}, got {padding}")
    if not 0 <= op < s:
      raise ValueError(f"output_padding: expected 0 <= output_padding < stride {strides} (as "
                       f"torch.nn.ConvTranspose2d), got {output_padding}")


def transpose_conv(x, kernel, strides=1, padding=0, output_padding=0, *,
                   feature_group_count: int = 1):
  """Transpose convolution of `x` [B, H, W, Cin] with `kernel` [kh, kw, Cin / groups, Cout].

  Output pixel `s * i + a - p` receives `x[i] @ kernel[a]` (summed where copies overlap);
  output size `(n - 1) * s - 2p + k + op`, as `torch.nn.ConvTranspose2d`.

  Computed in the scatter form: one matmul gives every copy `x[i] @ kernel[a]`, and copies
  are overlap-added block by block (a = q * s + r: block q, phase r). XLA:CPU runs this much
  faster than a convolution over the stride-dilated input, forwards and backwards.
  """
  check_images(x)
  kh, kw = kernel.shape[:2]
  (sh, sw) = strides = _positive(strides, "strides")
  padding = _pair(padding, "padding")
  output_padding = _pair(output_padding, "output_padding")
  _check_transpose_args((kh, kw), strides, padding, output_padding)
  groups = feature_group_count
  b, h, w, cin = x.shape
  if cin != kernel.shape[2] * groups or kernel.shape[3] % groups:
    raise ValueError(f"x: expected {kernel.shape[2] * groups} channels for kernel "
                     f"{tuple(kernel.shape)} in {groups} groups, got shape {tuple(x.shape)}")
  (ph, pw), (oph, opw) = padding, output_padding
  out_h = transpose_conv_output_size(h, kh, sh, ph, oph)
  out_w = transpose_conv_output_size(w, kw, sw, pw, opw)
  if out_h < 1 or out_w < 1:
    raise ValueError(f"padding: {padding} leaves no output for input {(h, w)} and kernel "
                     f"{(kh, kw)} (output size {(out_h, out_w)})")
  cout = kernel.shape[3]
  # Pad the kernel to whole blocks: [mh * sh, mw * sw, Cin / g, Cout].
  mh, mw = -(-kh // sh), -(-kw // sw)
  kernel = jnp.pad(kernel, ((0, mh * sh - kh), (0, mw * sw - kw), (0, 0), (0, 0)))
  kernel = kernel.reshape(mh, sh, mw, sw, cin // groups, groups, cout // groups)
  copies = jnp.einsum("bhwgi,qrtuigo->bhwqrtugo", x.reshape(b, h, w, groups, cin // groups),
                      kernel.astype(x.dtype))
  copies = copies.reshape(b, h, w, mh, sh, mw, sw, cout)
  # Block (q, t) of input pixel (i, j) lands at output rows s * (i + q) + r, so blocks add up
  # as shifted [B, H * sh, W * sw] maps.
  full = None
  for q in range(mh):
    for t in range(mw):
      block = jnp.transpose(copies[:, :, :, q, :, t], (0, 1, 3, 2, 4, 5))
      block = jnp.pad(block.reshape(b, h * sh, w * sw, cout),
                      ((0, 0), (q * sh, (mh - 1 - q) * sh), (t * sw, (mw - 1 - t) * sw), (0, 0)))
      full = block if full is None else full + block
  full = jnp.pad(full, ((0, 0), (0, max(ph + out_h - full.shape[1], 0)),
                        (0, max(pw + out_w - full.shape[2], 0)), (0, 0)))
  return full[:, ph:ph + out_h, pw:pw + out_w]


def _bilinear_line(size: int) -> np.ndarray:
  factor = (size + 1) // 2
  center = factor - 1 if size % 2 == 1 else factor - 0.5
  return 1 - np.abs(np.arange(size) - center) / factor


def bilinear_filter(size: int) -> np.ndarray:
  """Long et al.'s [size, size] bilinear upsampling filter (for factor ceil(size / 2))."""
  line = _bilinear_line(size)
  return np.outer(line, line)


def bilinear_kernel(kernel_size: int, in_features: int, out_features: int) -> np.ndarray:
  """A [k, k, in, out] kernel with the bilinear filter from channel i to channel i, else 0."""
  kernel = np.zeros((kernel_size, kernel_size, in_features, out_features), np.float32)
  filt = bilinear_filter(kernel_size)
  for i in range(min(in_features, out_features)):
    kernel[:, :, i, i] = filt
  return kernel


def bilinear_init(key, shape, dtype=jnp.float32):
  """Flax initializer: `bilinear_kernel` for a square [k, k, in, out] shape (key unused)."""
  del key
  kh, kw, cin, cout = shape
  if kh != kw:
    raise ValueError(f"bilinear_init: expected a square kernel, got shape {tuple(shape)}")
  return jnp.asarray(bilinear_kernel(kh, cin, cout), dtype)


def upsample_geometry(factor: int) -> tuple[int, int]:
  """(kernel_size, padding) of a stride-`factor` transpose convolution that outputs factor * n."""
  if factor < 1:
    raise ValueError(f"factor: expected a positive int, got {factor}")
  kernel = 2 * factor - factor % 2
  return kernel, (kernel - factor) // 2


def _upsample_matrix(size: int, factor: int) -> np.ndarray:
  """[size * factor, size]: the 1-D stride-`factor` transpose convolution with the bilinear line."""
  kernel, padding = upsample_geometry(factor)
  line = _bilinear_line(kernel)
  matrix = np.zeros((size * factor, size), np.float32)
  for i in range(size):
    for a in range(kernel):
      o = factor * i + a - padding
      if 0 <= o < size * factor:
        matrix[o, i] += line[a]
  return matrix


def bilinear_upsample(x, factor: int):
  """Fixed bilinear upsampling by an integer `factor` (per channel): [B, H, W, C] -> [B, fH, fW, C].

  The same as `transpose_conv` with the bilinear kernel of `upsample_geometry(factor)` on every
  channel (FCN's fixed final deconvolution): in the interior, half-pixel bilinear resizing
  (`jax.image.resize`); at the border the input is zero-padded. Computed separably, as two
  small matrix products.
  """
  check_images(x)
  rows = jnp.asarray(_upsample_matrix(x.shape[1], factor), x.dtype)
  cols = jnp.asarray(_upsample_matrix(x.shape[2], factor), x.dtype)
  return jnp.einsum("oh,bhwc,pw->bopc", rows, x, cols)


class ConvTranspose(nn.Module):
  """`torch.nn.ConvTranspose2d` as a Flax module (NHWC).

  Attributes:
    features: output channels.
    kernel_size: k (or (kh, kw)).
    strides: s.
    padding: p: output size (n - 1) * s - 2p + k + output_padding.
    output_padding: extra rows/columns at the bottom/right, 0 <= op < s.
    use_bias: add a bias per output channel.
    bilinear: initialise the kernel to bilinear upsampling (Long et al. 2015), channel i to i.
    kernel_init: initializer when `bilinear` is False.
  """
  features: int
  kernel_size: int | Sequence[int]
  strides: int | Sequence[int] = 1
  padding: int | Sequence[int] = 0
  output_padding: int | Sequence[int] = 0
  use_bias: bool = True
  bilinear: bool = False
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    check_images(x)
    kh, kw = _positive(self.kernel_size, "kernel_size")
    init = bilinear_init if self.bilinear else self.kernel_init
    kernel = self.param("kernel", init, (kh, kw, x.shape[-1], self.features), self.param_dtype)
    y = transpose_conv(x.astype(self.dtype), kernel.astype(self.dtype), self.strides,
                       self.padding, self.output_padding)
    if self.use_bias:
      bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
      y = y + bias.astype(self.dtype)
    return y


__all__ = ["ConvTranspose", "bed_of_nails", "bilinear_filter", "bilinear_init", "bilinear_kernel",
           "bilinear_upsample", "max_pool_with_argmax", "max_unpool", "nearest_upsample",
           "transpose_conv", "transpose_conv_output_size", "upsample_geometry"]
