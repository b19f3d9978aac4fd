"""The failure check of an ODE block's solve: max_steps reached, a diffrax failure, a non-finite
state. `throw=True` raises `ODESolveError` naming the block, the solve and what failed;
`throw=False` logs a warning and lets the block report the failure.

The check is built as `equinox.error_if` is: the state passes through a `lax.cond` whose
failure branch is a `jax.pure_callback` that raises (or logs) and returns the state unchanged.
A pure callback is no JAX effect, so a train step holding it keeps jit's C++ dispatch path
(`jax.debug.callback` would put every call of the step on the Python path: about 0.8 ms per
step on the CPU, docs/BENCHMARKS.md), and XLA drops the check with the state when the state is
unused. A custom JVP keeps the cond out of differentiation: tangents pass through unchanged.
"""

from __future__ import annotations

import logging

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.nn.ode_options import ODEOptions


class ODESolveError(RuntimeError):
  """An ODE block's solve hit max_steps, failed in diffrax, or produced a non-finite state."""


def check_solve(y1, sol: diffrax.Solution, *, limit: int, options: ODEOptions, where: str):
  """Raises (throw=True) or logs (throw=False) a failed or non-finite solve ending in `y1`.

  `limit` is the step budget the solve ran with; `where` names the block and its interval.
  Returns (y1 through the check, failed as a traced bool).
  """
  solved = sol.result == diffrax.RESULTS.successful
  finite = jnp.all(jnp.isfinite(y1))
  failed = jnp.logical_not(solved & finite)
  hint = (f"raise max_steps (now {options.max_steps}), loosen rtol/atol "
          f"({options.rtol}/{options.atol}) or lower the learning rate"
          if options.controller == "pid" else "lower the learning rate or the step dt")

  def report(y, failed, solved, finite, t, steps):
    """On the host, only when the solve failed: raises or logs; returns the state as it is."""
    if np.any(failed):
      reason = ("the state is not finite" if np.all(solved) and not np.all(finite) else
                f"max_steps={options.max_steps} reached" if np.max(steps) >= limit else
                "diffrax could not complete it")
      msg = (f"{where} stopped at t={float(np.min(t)):.6g} after {int(np.max(steps))} steps: "
             f"{reason}")
      if options.throw:
        raise ODESolveError(f"{msg}; {hint}, or set throw=False to report and continue")
      logging.getLogger(__name__).warning("%s (throw=False: continuing)", msg)
    return y

  @jax.custom_jvp
  def checked(y, *info):
    shape = jax.ShapeDtypeStruct(y.shape, y.dtype)
    return jax.lax.cond(
        info[0], lambda: jax.pure_callback(report, shape, y, *info, vmap_method="sequential"),
        lambda: y)

  @checked.defjvp
  def checked_jvp(primals, tangents):
    return checked(*primals), tangents[0]

  return checked(y1, failed, solved, finite, sol.ts[-1], sol.stats["num_steps"]), failed
