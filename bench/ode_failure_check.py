"""Benchmark: what the ODE block's solve-failure check costs a train step (with it vs without).

  python bench/ode_failure_check.py                           # every case below
  python bench/ode_failure_check.py --case odenet_mnist --batch 128 --steps 20

Each case's train step (bench/train_step.py: classification, SGD with momentum, state donated,
synthetic data, every timing waits on `block_until_ready`) is built three times, with
`check_solve` replaced while the step is traced:

  check:    the library's check (`jaxvision.nn.ode_check`: a pure callback in a `lax.cond`);
  effect:   the check it replaced: the same predicate, with a `jax.debug.callback` (a JAX
            effect) in the `lax.cond`;
  none:     no check: the state unchecked.

The step is called through `jax.jit`, as `fit` calls it. The variants start from the same state
and see the same batches, so they stay in lockstep; their steps alternate one by one (the order
rotating), so that a busy machine slows all alike. Prints, per case and variant, the median and
the fastest step time, their ratios to "none" (1.00: the check costs nothing measurable), the
quartiles of the ratios of neighbouring steps (the noise to read them against), and the host
callbacks and JAX effects in the step.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
from unittest import mock

import diffrax
import jax
import jax.numpy as jnp

from jaxvision.nn import ode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.cli import load, parse_options  # noqa: E402  (the repo root, for `python bench/x.py`)
from bench.train_step import TrainStep, time_steps  # noqa: E402

# name -> (model, image size, channels, model options, default timed steps). The depth study's
# network is `odenet` with its digits stem (train/configs/depth_study.py), with an adaptive and a
# fixed-step solve; `ode_resnet` has three ODE blocks (three checks per step).
CASES = {
    "odenet_mnist": ("odenet_mnist", 28, 1, {}, 12),
    "odenet_digits_dopri5": ("odenet", 8, 1, dict(width=32, downsampling=1, time_dependent=True),
                             40),
    "odenet_digits_rk4": ("odenet", 8, 1, dict(width=32, downsampling=1, time_dependent=True,
                                               solver="rk4", controller="constant", dt=0.25), 40),
    "ode_resnet": ("ode_resnet", 8, 3, dict(base="cifar_resnet20", solver="rk4",
                                            controller="constant", dt=0.5), 12),
    # A step of a few ms, as an ODE-Net's on an accelerator: a fixed cost per step shows here.
    "odenet_tiny_rk4": ("odenet", 8, 1, dict(width=8, downsampling=1, groups=4, solver="rk4",
                                             controller="constant", dt=0.5), 200),
}


def no_check(y1, sol, **kw):
  """`check_solve` without the check: the state as it is, never failed."""
  del sol, kw
  return y1, jnp.zeros((), bool)


def effect_check(y1, sol, **kw):
  """The previous check's shape: the same predicate, a `jax.debug.callback` in a `lax.cond`."""
  del kw
  failed = (sol.result != diffrax.RESULTS.successful) | ~jnp.all(jnp.isfinite(y1))
  jax.lax.cond(failed, lambda: jax.debug.callback(print, "failed", sol.stats["num_steps"]),
               lambda: None)
  return y1, failed


VARIANTS = {"check": ode.check_solve, "effect": effect_check, "none": no_check}


def jitted_step(case: str, batch: int, options: dict, variant: str) -> dict:
  """The jitted train step of `variant`, its state after one warm-up step, batch and rng, and
  the host callbacks and JAX effects in the step (traced and cached by jit under the patch)."""
  name, size, channels, fixed, _ = CASES[case]
  ts = TrainStep(name, batch, size, channels=channels, num_classes=10, **fixed, **options)
  with mock.patch.object(ode, "check_solve", VARIANTS[variant]):
    traced = ts.step.trace(ts.state, ts.data, ts.rng)
    state, _ = time_steps(ts.step, ts.init(), ts.data, ts.rng, 1)
  return dict(step=ts.step, state=state, data=ts.data, rng=ts.rng,
              callbacks=len(re.findall(r"python_\w+_callback", traced.lower().as_text())),
              effects=len(traced.jaxpr.effects))


def measure(case: str, batch: int, steps: int, options: dict) -> dict:
  """{variant: {"times": [s], "callbacks", "effects"}}, the variants' steps interleaved."""
  runs = {v: jitted_step(case, batch, options, v) for v in VARIANTS}
  names = list(runs)
  for r in runs.values():
    r["times"] = []
  for i in range(steps):
    for v in names[i % len(names):] + names[:i % len(names)]:
      r = runs[v]
      r["state"], t = time_steps(r["step"], r["state"], r["data"], r["rng"], 1)
      r["times"] += t
  return runs


def report(case: str, batch: int, runs: dict) -> str:
  base = runs["none"]["times"]
  lines = [f"{case} batch={batch}, {len(base)} steps each ({load()}):"]
  for v, r in runs.items():
    t, median = r["times"], statistics.median(r["times"])
    pairs = sorted(a / b for a, b in zip(t, base))
    lines.append(
        f"  {v:6s} median {1e3 * median:7.1f} ms (x{median / statistics.median(base):.3f}), "
        f"fastest {1e3 * min(t):7.1f} ms (x{min(t) / min(base):.3f}), step ratios' quartiles "
        f"{pairs[len(pairs) // 4]:.3f}-{pairs[3 * len(pairs) // 4]:.3f}; "
        f"{r['callbacks']} host callbacks, {r['effects']} JAX effects")
  return "\n".join(lines)


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--case", choices=sorted(CASES), action="append",
                 help="repeatable (default: every case)")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--steps", type=int, help="timed steps of each variant (default: per case)")
  p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                 help="model option for every case (repeatable), e.g. solver=tsit5")
  a = p.parse_args()
  print(f"{jax.devices()[0].device_kind}, jax {jax.__version__}")
  for case in a.case or CASES:
    steps = a.steps or CASES[case][-1]
    print(report(case, a.batch, measure(case, a.batch, steps, parse_options(a.option))),
          flush=True)


if __name__ == "__main__":
  main()
