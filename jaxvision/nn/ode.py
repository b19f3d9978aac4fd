"""The ODE block: `h(t1) = h(t0) + int_{t0}^{t1} f(t, h(t)) dt`, solved with diffrax.

The continuous limit of a residual stage `Y_{j+1} = Y_j + h * f(t_j, Y_j)` with shared weights
(Chen et al. 2018): as `h = T / N -> 0` the stage's output tends to the ODE's solution at `T`.
Solver, step-size controller, step, tolerances, step budget and adjoint are options
(`ODEOptions`), never fixed in code. The vector field is a Flax module `f(t, h) -> dh/dt`;
its parameters live under the block's `f` and are passed to the solver as `args`, so the
vector-field closure holds no Linen module (the UnexpectedTracerError trap).

The number of vector-field evaluations of the forward solve (NFE, the ODE's analogue of depth)
is sown as `intermediates/nfe`. The backward pass's evaluations cannot be sown from the forward
pass; `EvaluationCounter` measures both at run time (a measurement tool, not for training).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Callable, ClassVar

import diffrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class RK4(diffrax.AbstractERK):
  """The classical 4th-order Runge-Kutta method (4 stages; embedded midpoint error estimate)."""

  tableau: ClassVar[diffrax.ButcherTableau] = diffrax.ButcherTableau(
      c=np.array([0.5, 0.5, 1.0]),
      b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
      b_error=np.array([1 / 6, 1 / 3 - 1.0, 1 / 3, 1 / 6]),  # minus the midpoint rule
      a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
  )
  interpolation_cls: ClassVar[Callable[..., Any]] = (
      diffrax.ThirdOrderHermitePolynomialInterpolation.from_k)

  def order(self, terms):
    del terms
    return 4

  def error_order(self, terms):
    del terms
    return 2


SOLVERS: dict[str, Callable[[], diffrax.AbstractSolver]] = {
    "euler": diffrax.Euler, "heun": diffrax.Heun, "midpoint": diffrax.Midpoint, "rk4": RK4,
    "bosh3": diffrax.Bosh3, "dopri5": diffrax.Dopri5, "tsit5": diffrax.Tsit5,
}
CONTROLLERS = ("pid", "constant")
ADJOINTS = ("recursive_checkpoint", "backsolve")


class ODESolveError(RuntimeError):
  """An ODE block's solve hit max_steps, failed in diffrax, or produced a non-finite state."""


@dataclasses.dataclass(frozen=True)
class ODEOptions:
  """How an ODE block integrates (hashable, so models can hold it as an attribute).

  Attributes:
    solver: one of SOLVERS: euler, heun, midpoint, rk4 (fixed-step methods), bosh3, dopri5,
      tsit5 (with embedded error estimates for adaptive steps).
    controller: "pid" (adaptive steps from rtol/atol) or "constant" (fixed steps of `dt`).
    dt: the step for "constant"; the first step for "pid" (None: diffrax's choice).
    rtol: relative tolerance of the "pid" controller.
    atol: absolute tolerance of the "pid" controller.
    max_steps: most solver steps per solve (accepted and rejected); more is an error.
    adjoint: "recursive_checkpoint" (backpropagate through the solver, checkpointed) or
      "backsolve" (solve the adjoint ODE backwards in time: O(1) memory in the number of steps).
    checkpoints: checkpoints of "recursive_checkpoint" (None: diffrax's O(sqrt(max_steps))).
    throw: raise `ODESolveError` when a solve fails (default), or report it (sown as
      `intermediates/ode_failed`, logged as a warning) and return the state reached.
  """
  solver: str = "dopri5"
  controller: str = "pid"
  dt: float | None = None
  rtol: float = 1e-3
  atol: float = 1e-3
  max_steps: int = 4096
  adjoint: str = "recursive_checkpoint"
  checkpoints: int | None = None
  throw: bool = True

  def __post_init__(self):
    if self.solver not in SOLVERS:
      raise ValueError(f"solver: expected one of {sorted(SOLVERS)}, got {self.solver!r}")
    if self.controller not in CONTROLLERS:
      raise ValueError(f"controller: expected one of {CONTROLLERS}, got {self.controller!r}")
    if self.adjoint not in ADJOINTS:
      raise ValueError(f"adjoint: expected one of {ADJOINTS}, got {self.adjoint!r}")
    if self.controller == "constant" and self.dt is None:
      raise ValueError("dt: controller='constant' needs a step dt > 0, got None")
    if self.dt is not None and not self.dt > 0:
      raise ValueError(f"dt: expected a step > 0 or None, got {self.dt!r}")
    if self.controller == "pid":
      if self.solver == "euler":
        raise ValueError("solver: 'euler' has no error estimate for controller='pid'; use "
                         "controller='constant' or an adaptive solver (bosh3, dopri5, tsit5)")
      for name in ("rtol", "atol"):
        if not getattr(self, name) > 0:
          raise ValueError(f"{name}: expected a tolerance > 0, got {getattr(self, name)!r}")
    if not (isinstance(self.max_steps, int) and self.max_steps >= 1):
      raise ValueError(f"max_steps: expected an int >= 1, got {self.max_steps!r}")
    if self.checkpoints is not None and not self.checkpoints >= 1:
      raise ValueError(f"checkpoints: expected an int >= 1 or None, got {self.checkpoints!r}")

  def fixed_steps(self, t0: float, t1: float) -> int | None:
    """Steps of a "constant" solve over [t0, t1] (None for "pid")."""
    if self.controller != "constant":
      return None
    return max(1, math.ceil((t1 - t0) / self.dt - 1e-6))

  def stepsize_controller(self) -> diffrax.AbstractStepSizeController:
    if self.controller == "constant":
      return diffrax.ConstantStepSize()
    return diffrax.PIDController(rtol=self.rtol, atol=self.atol)

  def diffrax_adjoint(self) -> diffrax.AbstractAdjoint:
    if self.adjoint == "backsolve":
      return diffrax.BacksolveAdjoint()
    return diffrax.RecursiveCheckpointAdjoint(checkpoints=self.checkpoints)


OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(ODEOptions))


def split_ode_options(options: dict) -> tuple[ODEOptions, dict]:
  """`ODEOptions` from the ODE keys of flat model `options`, and the remaining options."""
  ode = {k: v for k, v in options.items() if k in OPTION_NAMES}
  return ODEOptions(**ode), {k: v for k, v in options.items() if k not in OPTION_NAMES}


def evaluations_per_step(solver: diffrax.AbstractSolver) -> tuple[int, int]:
  """(vector-field evaluations per step, extra ones on the first step) of an explicit solver.

  First-same-as-last Runge-Kutta methods (bosh3, dopri5, tsit5) reuse a step's last stage as
  the next step's first; rejected steps cost as much as accepted ones.
  """
  if isinstance(solver, diffrax.AbstractRungeKutta):
    stages = len(solver.tableau.c) + 1
    return (stages - 1, 1) if solver.tableau.fsal else (stages, 0)
  if isinstance(solver, diffrax.Euler):
    return 1, 0
  raise TypeError(f"solver: cannot count the evaluations of {type(solver).__name__}")


def augment_channels(x, channels: int):
  """Zero-pads `channels` extra channels (ANODE, Dupont et al. 2019) onto NHWC features."""
  if channels < 0:
    raise ValueError(f"augment: expected a number of channels >= 0, got {channels}")
  if channels == 0:
    return x
  return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, channels)])


class EvaluationCounter:
  """Counts, at run time, the vector-field evaluations and VJPs of ODE blocks traced inside it.

      with EvaluationCounter() as count:
        jax.jit(jax.grad(loss))(params)   # trace (and run) inside the context
      count.evaluations, count.vjps

  `vjps` is the backward pass's NFE: one VJP of f per step of the adjoint ODE (backsolve) or per
  forward evaluation differentiated (recursive checkpoint). `evaluations` includes the forward
  solve and what the backward pass recomputes. Host callbacks slow the solve: measurement only.
  """

  _active: list["EvaluationCounter"] = []

  def __init__(self):
    self.evaluations = 0
    self.vjps = 0

  def __enter__(self):
    EvaluationCounter._active.append(self)
    return self

  def __exit__(self, *exc):
    EvaluationCounter._active.remove(self)

  def _count_evaluation(self):
    self.evaluations += 1

  def _count_vjp(self):
    self.vjps += 1

  @classmethod
  def wrap(cls, fn: Callable) -> Callable:
    """`fn(params, t, y)`, counted by the innermost active counter (unchanged if none)."""
    if not cls._active:
      return fn
    counter = cls._active[-1]

    @jax.custom_vjp
    def counted(params, t, y):
      jax.debug.callback(counter._count_evaluation)
      return fn(params, t, y)

    def fwd(params, t, y):
      jax.debug.callback(counter._count_evaluation)
      return jax.vjp(fn, params, t, y)

    def bwd(vjp, g):
      jax.debug.callback(counter._count_vjp)
      return vjp(g)

    counted.defvjp(fwd, bwd)
    return counted


CONV_IMPLS = ("xla", "patches")


def patches_conv(lhs, rhs, window_strides, padding, *, lhs_dilation=None, rhs_dilation=None,
                 dimension_numbers=None, feature_group_count=1, precision=None):
  """`lax.conv_general_dilated` for NHWC x HWIO as shifted slices and one matmul (im2col).

  Same parameters and result (up to rounding). XLA:CPU runs a convolution's backward pass
  inside a while loop, as in every adaptive ODE solve, 10-60x slower than this formulation,
  whose backward pass is slices, pads and matmuls. The patches are recomputed in the backward
  pass rather than stored (they are kh * kw times the input). Other layouts fall back to XLA's
  convolution.
  """
  dilated = any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
  if (dimension_numbers is None or tuple(dimension_numbers.lhs_spec) != (0, 3, 1, 2)
      or tuple(dimension_numbers.rhs_spec) != (3, 2, 0, 1) or feature_group_count != 1
      or dilated or isinstance(padding, str)):
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        precision=precision)
  kh, kw, cin, cout = rhs.shape
  (sh, sw), (ph, pw) = window_strides, padding

  @jax.checkpoint
  def conv(lhs, rhs):
    x = jnp.pad(lhs, ((0, 0), tuple(ph), tuple(pw), (0, 0)))
    ho = (x.shape[1] - kh) // sh + 1
    wo = (x.shape[2] - kw) // sw + 1
    cols = jnp.concatenate([x[:, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw, :]
                            for i in range(kh) for j in range(kw)], axis=-1)
    return jnp.dot(cols, rhs.reshape(kh * kw * cin, cout), precision=precision)

  return conv(lhs, rhs)


def conv_impl(name: str | None) -> Callable | None:
  """The `conv_general_dilated` of nn.Conv for `name`; None: "patches" on CPU, else "xla"."""
  if name is None:
    name = "patches" if jax.default_backend() == "cpu" else "xla"
  if name not in CONV_IMPLS:
    raise ValueError(f"conv_impl: expected one of {CONV_IMPLS} or None, got {name!r}")
  return patches_conv if name == "patches" else None


def biased_conv(features: int, kernel: int, strides: int = 1, padding: int = 0,
                **kw) -> nn.Conv:
  """A convolution with bias, PyTorch's default kernel initialisation (U(+-1/sqrt(fan_in)), as
  torchdiffeq's example) and zero bias."""
  return nn.Conv(features, (kernel, kernel), (strides, strides),
                 padding=((padding, padding), (padding, padding)),
                 kernel_init=nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"), **kw)


class ConcatConv(nn.Module):
  """A 3x3 convolution that sees `t` as an extra first input channel (Chen et al.'s ConcatConv2d)."""
  features: int
  time_dependent: bool = True
  dtype: Any = jnp.float32
  conv_impl: str | None = None

  @nn.compact
  def __call__(self, t, h):
    if self.time_dependent:
      tt = jnp.broadcast_to(jnp.asarray(t, h.dtype), (*h.shape[:-1], 1))
      h = jnp.concatenate([tt, h], axis=-1)
    return biased_conv(self.features, 3, padding=1, dtype=self.dtype,
                       conv_general_dilated=conv_impl(self.conv_impl), name="conv")(h)


def group_norm(channels: int, groups: int, dtype: Any, name: str) -> nn.GroupNorm:
  """GroupNorm with the largest group count <= `groups` that divides `channels`."""
  return nn.GroupNorm(num_groups=math.gcd(groups, channels), epsilon=1e-5, dtype=dtype, name=name)


class ODEFunc(nn.Module):
  """Chen et al.'s vector field: GN-ReLU-ConcatConv-GN-ReLU-ConcatConv-GN, as many channels out as in.

  Attributes:
    time_dependent: feed `t` to both convolutions as an extra channel (ConcatConv2d); False
      gives an autonomous field f(h).
    groups: GroupNorm groups (at most; see `group_norm`). BatchNorm would make f depend on the
      batch and on the step, which an ODE's vector field must not.
    conv_impl: "xla" or "patches" (`patches_conv`); None: "patches" on CPU, "xla" elsewhere.
  """
  time_dependent: bool = True
  groups: int = 32
  dtype: Any = jnp.float32
  conv_impl: str | None = None

  @nn.compact
  def __call__(self, t, h):
    c = h.shape[-1]
    y = h.astype(self.dtype)
    y = nn.relu(group_norm(c, self.groups, self.dtype, "norm1")(y))
    y = ConcatConv(c, self.time_dependent, self.dtype, self.conv_impl, name="conv1")(t, y)
    y = nn.relu(group_norm(c, self.groups, self.dtype, "norm2")(y))
    y = ConcatConv(c, self.time_dependent, self.dtype, self.conv_impl, name="conv2")(t, y)
    return group_norm(c, self.groups, self.dtype, "norm3")(y).astype(h.dtype)


class ODEBlock(nn.Module):
  """Integrates `dh/dt = f(t, h)` from `t0` to `t1` and returns `h(t1)` (same shape as h(t0)).

  Attributes:
    vector_field: constructor of the module f, called as `f(t, h)`; its variables must all be
      parameters (no BatchNorm statistics).
    t0: start time.
    t1: end time (> t0); `t1 - t0` is the stage's "depth" T.
    options: solver, controller, dt, tolerances, max_steps, adjoint, throw (`ODEOptions`).
    augment: zero channels appended before the solve (ANODE); the output keeps them.
  Sows `intermediates/nfe` (forward evaluations of f), and `ode_failed` when `throw=False`.
  `init` only creates f's parameters (one evaluation of f) and returns the augmented input
  unsolved: tracing and compiling a solve just to initialise would cost seconds per model.
  """
  vector_field: Callable[..., nn.Module]
  t0: float = 0.0
  t1: float = 1.0
  options: ODEOptions = ODEOptions()
  augment: int = 0

  @nn.compact
  def __call__(self, x):
    if not self.t1 > self.t0:
      raise ValueError(f"t1: expected t1 > t0 = {self.t0}, got {self.t1}")
    opts = self.options
    fixed = opts.fixed_steps(self.t0, self.t1)
    if fixed is not None and fixed > opts.max_steps:
      raise ValueError(f"max_steps: {opts.max_steps} is fewer than the {fixed} fixed steps of "
                       f"dt={opts.dt} over [{self.t0}, {self.t1}]")
    y0 = augment_channels(x, self.augment).astype(jnp.float32)
    f = self.vector_field(name="f")
    if self.is_initializing():
      f(self.t0, y0)  # creates f's parameters
      return y0.astype(x.dtype)
    f_unbound, f_vars = f.unbind()
    extra = sorted(set(f_vars) - {"params"})
    if extra:
      raise ValueError(f"vector_field: f may hold parameters only, got collections {extra} "
                       "(use GroupNorm, not BatchNorm, inside an ODE's vector field)")

    def field(params, t, y):
      return f_unbound.apply({"params": params}, t, y).astype(y.dtype)

    field = EvaluationCounter.wrap(field)
    limit = opts.max_steps if fixed is None else fixed + 1  # +1: slack for rounding of t
    solver = SOLVERS[opts.solver]()
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, params: field(params, t, y)), solver, self.t0, self.t1,
        opts.dt, y0, f_vars.get("params", {}), stepsize_controller=opts.stepsize_controller(),
        adjoint=opts.diffrax_adjoint(), max_steps=limit, throw=False)
    y1 = sol.ys[-1]
    steps = sol.stats["num_steps"]
    per_step, first = evaluations_per_step(solver)
    self.sow("intermediates", "nfe", per_step * steps + first * (steps > 0))
    self._check(sol, y1, steps, limit)
    return y1.astype(x.dtype)

  def _check(self, sol, y1, steps, limit):
    """Raises (throw=True) or reports (throw=False) a failed or non-finite solve."""
    solved = sol.result == diffrax.RESULTS.successful
    finite = jnp.all(jnp.isfinite(y1))
    failed = jnp.logical_not(solved & finite)
    opts = self.options
    name = "/".join(self.scope.path) or self.name or type(self).__name__
    where = (f"ODEBlock {name!r}: the {opts.solver} solve over "
             f"[{self.t0}, {self.t1}]")
    hint = (f"raise max_steps (now {opts.max_steps}), loosen rtol/atol ({opts.rtol}/{opts.atol}) "
            "or lower the learning rate" if opts.controller == "pid" else
            "lower the learning rate or the step dt")

    def report(failed, solved, finite, t, steps):
      if not failed:
        return
      reason = ("the state is not finite" if solved and not finite else
                f"max_steps={opts.max_steps} reached" if int(steps) >= limit else
                "diffrax could not complete it")
      msg = f"{where} stopped at t={float(t):.6g} after {int(steps)} steps: {reason}"
      if opts.throw:
        raise ODESolveError(f"{msg}; {hint}, or set throw=False to report and continue")
      logging.getLogger(__name__).warning("%s (throw=False: continuing)", msg)

    if not opts.throw:
      self.sow("intermediates", "ode_failed", failed.astype(jnp.float32))
    jax.lax.cond(failed, lambda: jax.debug.callback(report, failed, solved, finite, sol.ts[-1],
                                                    steps), lambda: None)
