"""Counting an ODE block's vector-field evaluations at run time (a measurement tool).

The forward solve's NFE is sown by the block itself (`intermediates/nfe`); the backward pass's
cannot be sown from the forward pass, so `EvaluationCounter` counts both with host callbacks.
"""

from __future__ import annotations

from typing import Callable

import jax


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
