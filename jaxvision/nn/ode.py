"""The ODE block: `h(t1) = h(t0) + int_{t0}^{t1} f(t, h(t)) dt`, solved with diffrax.

The continuous limit of a residual stage `Y_{j+1} = Y_j + h * f(t_j, Y_j)` with shared weights
(Chen et al. 2018): as `h = T / N -> 0` the stage's output tends to the ODE's solution at `T`.
How it integrates is `ODEOptions` (ode_options.py). The vector field is a Flax module
`f(t, h) -> dh/dt` (Chen et al.'s: `ODEFunc`, ode_field.py); its parameters live under the
block's `f` and are passed to the solver as `args`, so the vector-field closure holds no Linen
module (the UnexpectedTracerError trap). A failed solve raises `ODESolveError` or is reported
(ode_check.py).

The number of vector-field evaluations of the forward solve (NFE, the ODE's analogue of depth)
is sown as `intermediates/nfe`; `EvaluationCounter` (ode_count.py) measures the backward pass's
too. This module is the ODE block's public face: it re-exports the names of those modules.
"""

from __future__ import annotations

from typing import Callable

import diffrax
import flax.linen as nn
import jax.numpy as jnp

from jaxvision.nn.ode_check import ODESolveError, check_solve
from jaxvision.nn.ode_count import EvaluationCounter
from jaxvision.nn.ode_field import (CONV_IMPLS, ConcatConv, ODEFunc, biased_conv, conv_impl,
                                    group_norm, patches_conv)
from jaxvision.nn.ode_options import (ADJOINTS, CONTROLLERS, OPTION_NAMES, RK4, SOLVERS,
                                      ODEOptions, evaluations_per_step, split_ode_options)

__all__ = [
    "ADJOINTS", "CONTROLLERS", "CONV_IMPLS", "OPTION_NAMES", "RK4", "SOLVERS", "ConcatConv",
    "EvaluationCounter", "ODEBlock", "ODEFunc", "ODEOptions", "ODESolveError",
    "augment_channels", "biased_conv", "conv_impl", "evaluations_per_step", "group_norm",
    "patches_conv", "split_ode_options",
]


def augment_channels(x, channels: int):
  """Zero-pads `channels` extra channels (ANODE, Dupont et al. 2019) onto NHWC features."""
  if channels < 0:
    raise ValueError(f"augment: expected a number of channels >= 0, got {channels}")
  if channels == 0:
    return x
  return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, channels)])


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
    name = "/".join(self.scope.path) or self.name or type(self).__name__
    y1, failed = check_solve(y1, sol, limit=limit, options=opts,
                             where=f"ODEBlock {name!r}: the {opts.solver} solve over "
                                   f"[{self.t0}, {self.t1}]")
    if not opts.throw:
      self.sow("intermediates", "ode_failed", failed.astype(jnp.float32))
    return y1.astype(x.dtype)
