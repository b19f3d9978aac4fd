"""Residual blocks and the residual stage: ResNet as a discrete dynamical system.

A residual block computes `Y_{j+1} = S(Y_j) + h * G(Y_j, theta_j)` (followed by the ReLU of
the original ResNet), where `G` is the residual branch, `S` the shortcut (the identity inside a
stage) and `h` the step size. A stage of identical blocks is a scan over `j`, with the block
parameters stacked along a leading axis: the dynamical-system view made literal, and a
compile time that does not grow with depth.

Stochastic depth (Huang et al. 2016): in training, the whole branch of a block is kept with
probability `p` and dropped (the block is its shortcut) otherwise, for the whole batch; in
evaluation the branch is scaled by `p`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.nn.conv import conv_general_dilated

ModuleDef = Any

conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv(features: int, kernel: int, strides: int = 1, **kw) -> nn.Conv:
  """A bias-free convolution with torchvision's symmetric padding `kernel // 2` (on the CPU, small
  output maps run as im2col: `jaxvision.nn.conv`)."""
  pad = kernel // 2
  kw = {"conv_general_dilated": conv_general_dilated, **kw}
  return nn.Conv(features, (kernel, kernel), (strides, strides), padding=((pad, pad), (pad, pad)),
                 use_bias=False, kernel_init=conv_kernel_init, **kw)


class BasicBranch(nn.Module):
  """G(Y) of ResNet-18/34 and the CIFAR ResNets: 3x3 conv-BN-ReLU-3x3 conv-BN."""
  features: int
  strides: int = 1
  norm: ModuleDef = nn.BatchNorm
  dtype: Any = jnp.float32
  zero_init_last: bool = False
  expansion = 1

  @nn.compact
  def __call__(self, x):
    y = conv(self.features, 3, self.strides, dtype=self.dtype, name="conv1")(x)
    y = nn.relu(self.norm(name="bn1")(y))
    y = conv(self.features, 3, dtype=self.dtype, name="conv2")(y)
    scale_init = nn.initializers.zeros if self.zero_init_last else nn.initializers.ones
    return self.norm(name="bn2", scale_init=scale_init)(y)


class BottleneckBranch(nn.Module):
  """G(Y) of ResNet-50/101/152: 1x1-3x3-1x1 convolutions, stride on the 3x3 (torchvision v1.5)."""
  features: int
  strides: int = 1
  norm: ModuleDef = nn.BatchNorm
  dtype: Any = jnp.float32
  zero_init_last: bool = False
  expansion = 4

  @nn.compact
  def __call__(self, x):
    y = conv(self.features, 1, dtype=self.dtype, name="conv1")(x)
    y = nn.relu(self.norm(name="bn1")(y))
    y = conv(self.features, 3, self.strides, dtype=self.dtype, name="conv2")(y)
    y = nn.relu(self.norm(name="bn2")(y))
    y = conv(self.features * self.expansion, 1, dtype=self.dtype, name="conv3")(y)
    scale_init = nn.initializers.zeros if self.zero_init_last else nn.initializers.ones
    return self.norm(name="bn3", scale_init=scale_init)(y)


SHORTCUTS = ("identity", "projection", "pad", "none")


class ResidualBlock(nn.Module):
  """One step `Y -> relu(S(Y) + h * gate * G(Y))` (without the ReLU: `post_activation=False`).

  Attributes:
    branch: constructor of the residual branch `G` (features and strides already bound).
    out_features: channels of the output.
    strides: spatial stride of the block (the branch's and the shortcut's).
    shortcut: "identity", "projection" (1x1 conv + BN, option B), "pad" (subsample and
      zero-pad channels, option A of He et al. 2015) or "none" (no skip: the block of a plain
      network, `relu(h * G(Y))`).
    step_size: h.
    stochastic_depth: whether `survival_prob` gates the branch.
    post_activation: the ReLU after the sum (ResNet v1). Without it, an identity-shortcut block
      is an explicit Euler step `Y + h * G(t, Y)` of the ODE `dY/dt = G(t, Y)`.
    time_input: call the branch as `G(t, Y)` with the block's time `t` (else `G(Y)`).
  """
  branch: Callable[..., nn.Module]
  out_features: int
  strides: int = 1
  shortcut: str = "identity"
  step_size: float = 1.0
  stochastic_depth: bool = False
  norm: ModuleDef = nn.BatchNorm
  dtype: Any = jnp.float32
  post_activation: bool = True
  time_input: bool = False

  @nn.compact
  def __call__(self, x, survival_prob, train: bool, t=0.0):
    gate = self._gate(survival_prob, train)
    if self.stochastic_depth and train and not self.is_initializing():
      y = self._skip_or_run(x, gate, t)
    else:
      g = self._branch(x, t)
      y = (self.step_size * gate).astype(g.dtype) * g
      if self.shortcut != "none":
        y = self._shortcut(x) + y
    return nn.relu(y) if self.post_activation else y

  def _branch(self, x, t):
    branch = self.branch(name="branch")
    return branch(t, x) if self.time_input else branch(x)

  def _skip_or_run(self, x, gate, t):
    """Training with stochastic depth: a dropped block is skipped, not computed and zeroed, as
    in Huang et al. (its time is saved and its BatchNorm statistics stay as they were)."""
    s = self._shortcut(x)
    h = self.step_size

    def run(module, s, x):
      return (s + jnp.asarray(h, s.dtype) * module._branch(x, t)).astype(s.dtype)

    return nn.cond(gate > 0, run, lambda module, s, x: s, self, s, x)

  def _shortcut(self, x):
    if self.shortcut == "identity":
      if self.strides != 1 or x.shape[-1] != self.out_features:
        raise ValueError(f"shortcut='identity' needs strides=1 and {self.out_features} input "
                         f"channels; got strides={self.strides}, input shape {x.shape}")
      return x
    if self.shortcut == "projection":
      s = conv(self.out_features, 1, self.strides, dtype=self.dtype, name="proj_conv")(x)
      return self.norm(name="proj_bn")(s)
    if self.shortcut == "pad":
      s = x[:, ::self.strides, ::self.strides, :]
      extra = self.out_features - x.shape[-1]
      return jnp.pad(s, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
    raise ValueError(f"shortcut: expected one of {SHORTCUTS}, got {self.shortcut!r}")

  def _gate(self, survival_prob, train: bool):
    """1 without stochastic depth; Bernoulli(p) in training; p in evaluation."""
    if not self.stochastic_depth:
      return jnp.ones((), jnp.float32)
    if self.shortcut == "none":
      raise ValueError("stochastic_depth: needs a shortcut (a dropped block of a plain network "
                       "outputs zeros); got shortcut='none'")
    p = jnp.asarray(survival_prob, jnp.float32)
    if train:
      gate = jax.random.bernoulli(self.make_rng("stochastic_depth"), p).astype(jnp.float32)
    else:
      gate = p
    self.sow("intermediates", "gate", gate)
    return gate


class _ScanStep(nn.Module):
  """Adapts ResidualBlock to nn.scan's (carry, x) -> (carry, y) signature."""
  block: Callable[..., nn.Module]
  remat: bool = False

  @nn.compact
  def __call__(self, y, inputs, train: bool):
    survival_prob, t = inputs
    block_cls = nn.remat(ResidualBlock, static_argnums=(3,)) if self.remat else ResidualBlock
    block = block_cls(**self.block, name="block")
    return block(y, survival_prob, train, t), None


class ResidualStage(nn.Module):
  """`num_blocks` identical residual blocks, `Y_{j+1} = relu(Y_j + h * G(Y_j, theta_j))`.

  Attributes:
    block: keyword arguments of ResidualBlock (branch, out_features, step_size, ...), shared
      by every block of the stage (identity shortcut, stride 1).
    num_blocks: number of steps.
    survival_probs: per-block survival probabilities for stochastic depth (len num_blocks).
    share_weights: one theta for the whole stage (params broadcast over the scan); the
      batch-norm running statistics stay per step.
    remat: recompute each block in the backward pass instead of storing its activations.
    scan: scan over blocks (params stacked on a leading axis under `blocks`) or unroll
      them in Python (params under `blocks_0`, `blocks_1`, ...).
    scan_unroll: blocks per iteration of the compiled scan loop (same parameters, same
      result). None: every block on the CPU, whose XLA backend runs the backward pass of a
      convolution inside a loop 10-40x slower (docs/BENCHMARKS.md); 1 on GPU/TPU, where the
      rolled loop keeps compile time flat in depth.
  Block j runs at time t_j = j * h (seen by branches of blocks with `time_input`).
  """
  block: dict
  num_blocks: int
  survival_probs: Sequence[float] | None = None
  share_weights: bool = False
  remat: bool = False
  scan: bool = True
  scan_unroll: int | None = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    if self.num_blocks == 0:
      return x
    probs = self.survival_probs or (1.0,) * self.num_blocks
    if len(probs) != self.num_blocks:
      raise ValueError(f"survival_probs: expected {self.num_blocks} values, got {len(probs)}")
    if not self.scan:
      return self._unrolled(x, probs, train)
    axes = {"batch_stats": 0, "intermediates": 0}
    if not self.share_weights:
      axes["params"] = 0
    scanned = nn.scan(
        _ScanStep,
        variable_axes=axes,
        variable_broadcast="params" if self.share_weights else False,
        split_rngs={"params": not self.share_weights, "stochastic_depth": True, "dropout": True},
        in_axes=(0, nn.broadcast),
        length=self.num_blocks,
        unroll=self._unroll(),
    )
    inputs = (jnp.asarray(probs, jnp.float32), jnp.asarray(self._times(), jnp.float32))
    y, _ = scanned(self.block, self.remat, name="blocks")(x, inputs, train)
    return y

  def _times(self) -> list[float]:
    return [j * self.block.get("step_size", 1.0) for j in range(self.num_blocks)]

  def _unroll(self) -> int:
    """lax.scan's `unroll`: 0 (no loop at all) when every block is unrolled, since XLA:CPU runs
    the backward convolutions of even a one-trip loop (a stage of one block) on its slow path."""
    if self.scan_unroll is not None:
      if self.scan_unroll < 1:
        raise ValueError(f"scan_unroll: expected a positive int or None, got {self.scan_unroll}")
      unroll = self.scan_unroll
    else:
      unroll = self.num_blocks if jax.default_backend() == "cpu" else 1
    return 0 if unroll >= self.num_blocks else unroll

  def _unrolled(self, x, probs, train):
    if self.share_weights:
      raise ValueError("share_weights=True needs scan=True (the scan broadcasts one theta)")
    for j, (p, t) in enumerate(zip(probs, self._times())):
      x, _ = _ScanStep(self.block, self.remat, name=f"blocks_{j}")(x, (p, t), train)
    return x


def linear_survival_probs(num_blocks: int, final_survival_prob: float) -> list[float]:
  """Huang et al.'s linear decay: p_l = 1 - l / L * (1 - p_L), for blocks l = 1..L."""
  if not 0.0 < final_survival_prob <= 1.0:
    raise ValueError(f"final_survival_prob: expected a value in (0, 1], got {final_survival_prob}")
  return [1.0 - (l / num_blocks) * (1.0 - final_survival_prob) for l in range(1, num_blocks + 1)]


def unstack_stage(stage_vars: dict, num_blocks: int) -> dict:
  """Scanned stage variables ({'blocks': stacked}) -> unrolled ({'blocks_0': ..., ...})."""
  stacked = stage_vars["blocks"]
  return {f"blocks_{j}": jax.tree.map(lambda a: a[j], stacked) for j in range(num_blocks)}


def stack_stage(stage_vars: dict, num_blocks: int) -> dict:
  """Unrolled stage variables ({'blocks_0': ..., ...}) -> scanned ({'blocks': stacked})."""
  blocks = [stage_vars[f"blocks_{j}"] for j in range(num_blocks)]
  return {"blocks": jax.tree.map(lambda *a: jnp.stack(a), *blocks)}


def batch_norm(train: bool, axis_name: str | None, dtype: Any) -> Callable[..., nn.Module]:
  """torchvision's BatchNorm2d defaults (momentum 0.1 -> Flax 0.9, eps 1e-5), synced over axis_name."""
  return functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                           epsilon=1e-5, dtype=dtype, axis_name=axis_name)
