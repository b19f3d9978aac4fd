"""The failure check of an ODE block's solve: max_steps reached, a diffrax failure, a non-finite
state. `throw=True` raises `ODESolveError` naming the block, the solve and what failed;
`throw=False` logs a warning and lets the block report the failure.

Built as `equinox.error_if` is, with no JAX effect: a `lax.cond` whose failure branch is a
`jax.pure_callback` that raises (or logs) on the host. A train step holding it keeps jit's C++
dispatch path; a `jax.debug.callback` (an effect) would put every call of the step on the
Python path, 1-3 ms per step on the CPU (docs/BENCHMARKS.md). The cond yields a gate, 1,
that multiplies the state: the check runs wherever the state or its gradient is used (a
gradient alone needs the gate too), and XLA drops it with an unused state.
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
  dtype = y1.dtype
  hint = (f"raise max_steps (now {options.max_steps}), loosen rtol/atol "
          f"({options.rtol}/{options.atol}) or lower the learning rate"
          if options.controller == "pid" else "lower the learning rate or the step dt")

  def report(failed, solved, finite, t, steps):
    """On the host, only when the solve failed: raises or logs; returns the gate, 1."""
    if np.any(failed):
      reason = ("the state is not finite" if np.all(solved) and not np.all(finite) else
                f"max_steps={options.max_steps} reached" if np.max(steps) >= limit else
                "diffrax could not complete it")
      msg = (f"{where} stopped at t={float(np.min(t)):.6g} after {int(np.max(steps))} steps: "
             f"{reason}")
      if options.throw:
        raise ODESolveError(f"{msg}; {hint}, or set throw=False to report and continue")
      logging.getLogger(__name__).warning("%s (throw=False: continuing)", msg)
    return np.ones((), dtype)

  info = jax.lax.stop_gradient((failed, solved, finite, sol.ts[-1], sol.stats["num_steps"]))
  one = jax.ShapeDtypeStruct((), dtype)
  gate = jax.lax.cond(info[0],
                      lambda: jax.pure_callback(report, one, *info, vmap_method="sequential"),
                      lambda: jnp.ones((), dtype))
  return y1 * gate, failed
