"""How an ODE block integrates: the solvers, the options (`ODEOptions`) and their checks.

Solver, step-size controller, step, tolerances, step budget and adjoint are options, never fixed
in code; `evaluations_per_step` turns a solver's step count into its number of vector-field
evaluations (NFE).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, ClassVar

import diffrax
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
