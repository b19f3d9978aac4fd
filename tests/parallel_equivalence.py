"""Run in a subprocess with 8 host devices (see test_parallel.py): one single-device step vs
ShardedJit and Pmap steps on the same global batch. Prints the largest differences as JSON."""

import json
import os
import sys

assert "--xla_force_host_platform_device_count=8" in os.environ.get("XLA_FLAGS", ""), "set XLA_FLAGS"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import flax.linen as nn  # noqa: E402

from jaxvision.models.odenet import ODENet  # noqa: E402
from jaxvision.nn.ode_options import ODEOptions  # noqa: E402
from jaxvision.models.resnet import ResNet  # noqa: E402
from jaxvision.training import parallel, steps  # noqa: E402
from jaxvision.training.segmentation_task import Segmentation  # noqa: E402
from jaxvision.training.train_state import create_train_state  # noqa: E402


def tiny(**kw):
  return ResNet(stage_sizes=(2, 2), widths=(8, 16), num_classes=5, stem="cifar", stem_width=8,
                stochastic_depth=True, final_survival_prob=0.5, **kw)


def host(tree):
  return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def max_diff(a, b):
  """The largest difference of any leaf of `b` from `a`, relative to that leaf's largest value."""
  return max((float(np.max(np.abs(x - y)) / max(np.max(np.abs(x)), 1.0))
              for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))), default=0.0)


def tiny_ode():
  """Chen et al.'s ODE-Net, narrow: a diffrax solve inside every step. Fixed RK4 steps: with
  adaptive steps each device's shard would choose its own (another, equally valid, solve)."""
  return ODENet(num_classes=5, width=8, groups=4,
                ode=ODEOptions(solver="rk4", controller="constant", dt=0.25))


class PixelClassifier(nn.Module):
  """Two 3x3 convolutions to 4 classes per pixel: a segmentation model with no BatchNorm."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    return nn.Conv(4, (3, 3))(nn.relu(nn.Conv(8, (3, 3))(x)))


def segmentation_batches(rs, n_steps):
  """Masks whose shards hold very different numbers of valid pixels (label 255: ignore), so a
  mean of per-device means differs from the global mean."""
  batches = []
  for _ in range(n_steps):
    mask = rs.randint(0, 4, (16, 8, 8)).astype(np.int32)
    mask[:8, 2:] = 255  # the first four devices see a quarter of the pixels
    batches.append({"image": rs.randn(16, 8, 8, 3).astype(np.float32), "mask": mask})
  return batches


def compare(out, model, runs, batches, rng, task=None):
  """Adds to `out` the largest differences of each (name, kind, model) run's state and metrics
  from a single-device step from the same initial state; returns that state."""
  tx = optax.sgd(0.1, momentum=0.9)
  state0 = create_train_state(model, tx, jax.random.key(0), (8, 8, 3))
  single = jax.jit(steps.make_train_step(task))
  s, ref_metrics = state0, []
  for b in batches:
    s, m = single(s, b, rng)
    ref_metrics.append(host(m))
  ref = host((s.params, s.batch_stats, s.opt_state))
  for name, kind, model in runs:
    dp = parallel.data_parallel(kind, task)
    st = dp.put_state(jax.tree.map(np.array, state0.replace(apply_fn=model.apply)))
    metrics = []
    for b in batches:
      st, m = dp.train_step(st, b, rng)
      metrics.append(host(m))
    st = dp.get_state(st)
    got = host((st.params, st.batch_stats, st.opt_state))
    out[name] = {"params": max_diff(ref[0], got[0]), "batch_stats": max_diff(ref[1], got[1]),
                 "opt_state": max_diff(ref[2], got[2]), "metrics": max_diff(ref_metrics, metrics),
                 "num_devices": dp.num_devices}
  return state0


def main():
  n_steps = 2
  rs = np.random.RandomState(0)
  batches = [{"image": rs.randn(16, 8, 8, 3).astype(np.float32),
              "label": rs.randint(0, 5, 16).astype(np.int32)} for _ in range(n_steps)]
  rng = jax.random.key(1)
  out = {"devices": jax.device_count()}
  # "pmap_unsynced": a model without axis_name keeps per-device BatchNorm statistics (the trap).
  state0 = compare(out, tiny(), (("jit", "jit", tiny()),
                                 ("pmap", "pmap", tiny(axis_name=parallel.PMAP_AXIS)),
                                 ("pmap_unsynced", "pmap", tiny())), batches, rng)
  compare(out, tiny_ode(), (("ode_jit", "jit", tiny_ode()), ("ode_pmap", "pmap", tiny_ode())),
          batches, rng)
  compare(out, PixelClassifier(), (("segmentation_jit", "jit", PixelClassifier()),
                                   ("segmentation_pmap", "pmap", PixelClassifier())),
          segmentation_batches(rs, n_steps), rng, Segmentation(num_overlays=0))
  # A batch that does not divide across the 8 devices is refused before any compute.
  for kind in ("jit", "pmap"):
    dp = parallel.data_parallel(kind)
    try:
      dp.train_step(dp.put_state(jax.tree.map(np.array, state0)),
                    {k: v[:12] for k, v in batches[0].items()}, rng)
      out[f"{kind}_indivisible"] = "no error"
    except ValueError as e:
      out[f"{kind}_indivisible"] = str(e)
  json.dump(out, sys.stdout)


if __name__ == "__main__":
  main()
