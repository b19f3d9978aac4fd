"""Benchmark: a depth study's seeds trained together (`jax.vmap` over seeds) or one after another.

  python bench/seeds_vmap.py                                     # digits, four runs, 3 seeds
  python bench/seeds_vmap.py --preset digits_full --runs residual_N64_unshared --seeds 3

For each run of the depth study's sweep (jaxvision/configs/depth_study.py), S train states
(one per seed) take one training step each: either S calls of the jitted train step that the
study runs (`make_train_step`, state donated), or one call of the same step under `jax.vmap`
over the stacked states, batches and step keys (one program for all seeds). Both are timed
`--steps` steps at a time, in turn, `--rounds` times (a busy machine slows both alike); printed:
the median time of one step of all S seeds each way and the median over rounds of
(together / one after another): below 1 the vmapped program is faster.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def build(preset: str, name: str, seeds: int):
  """(one step, the vmapped step, S states, S batches, S keys) of run `name` of the sweep."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from jaxvision import data
  from jaxvision.analysis.depth_study import run_config, sweep
  from jaxvision.configs import depth_study
  from jaxvision.models import create_model
  from jaxvision.training import optim
  from jaxvision.training.steps import make_train_step
  from jaxvision.training.tasks import make_task
  from jaxvision.training.train_state import create_train_state

  config = depth_study.get_config(preset)
  runs = {r["name"]: r for r in sweep(config)}
  if name not in runs:
    raise SystemExit(f"--runs: {name!r} is not in the {preset} sweep; expected one of {sorted(runs)}")
  cfg = run_config(config, runs[name])
  info = data.dataset_info(cfg.dataset)
  model = create_model(cfg.model.name, num_classes=info.num_classes, **cfg.model.options)
  steps_per_epoch = info.num_train // cfg.batch_size
  schedule = optim.make_schedule(cfg.optimizer, steps_per_epoch=steps_per_epoch,
                                 total_steps=steps_per_epoch * 5, batch_size=cfg.batch_size)
  tx = optim.make_optimizer(cfg.optimizer, schedule)
  step = make_train_step(make_task(cfg, model), schedule=schedule,
                         log_intermediates=tuple(cfg.log_intermediates),
                         normalize=(info.mean, info.std))
  keys = jax.random.split(jax.random.key(0), seeds)
  states = [create_train_state(model, tx, k, info.image_shape) for k in keys]
  rs = np.random.RandomState(0)
  batches = [{"image": jnp.asarray(rs.uniform(0, 255, (cfg.batch_size, *info.image_shape)),
                                   jnp.float32),
              "label": jnp.asarray(rs.randint(0, info.num_classes, cfg.batch_size), jnp.int32)}
             for _ in range(seeds)]
  one = jax.jit(step, donate_argnums=0)
  together = jax.jit(jax.vmap(step), donate_argnums=0)
  return one, together, states, batches, keys


def stack_seeds(trees: list):
  """One tree per seed -> one tree whose leaves have a leading seed axis (what the vmapped step
  takes)."""
  import jax
  import jax.numpy as jnp
  return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def time_both(name: str, args) -> tuple[float, float, float]:
  import jax
  import jax.numpy as jnp

  one, together, states, batches, keys = build(args.preset, name, args.seeds)
  stacked, stacked_batch = stack_seeds(states), stack_seeds(batches)
  states = [jax.tree.map(jnp.copy, s) for s in states]  # `stacked` holds the others

  def sequential(n):
    nonlocal states
    t = time.perf_counter()
    for _ in range(n):
      states = [one(s, b, k)[0] for s, b, k in zip(states, batches, keys)]
    jax.block_until_ready(states)
    return (time.perf_counter() - t) / n

  def vmapped(n):
    nonlocal stacked
    t = time.perf_counter()
    for _ in range(n):
      stacked = together(stacked, stacked_batch, keys)[0]
    jax.block_until_ready(stacked)
    return (time.perf_counter() - t) / n

  sequential(1), vmapped(1)  # compile
  seq, vm = [], []
  for _ in range(args.rounds):
    seq.append(sequential(args.steps))
    vm.append(vmapped(args.steps))
  ratio = statistics.median(v / s for v, s in zip(vm, seq))
  return statistics.median(seq), statistics.median(vm), ratio


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--preset", default="digits_full", help="depth_study preset (default digits_full)")
  p.add_argument("--runs", default="residual_N04_unshared,residual_N16_unshared,"
                 "ode_rk4_dt025,bnresnet_N04_unshared", help="comma-separated run names")
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--steps", type=int, default=20, help="steps per timing")
  p.add_argument("--rounds", type=int, default=5)
  args = p.parse_args()
  if args.seeds < 1 or args.steps < 1 or args.rounds < 1:
    raise SystemExit(f"--seeds, --steps, --rounds: expected >= 1, got {args.seeds}, "
                     f"{args.steps}, {args.rounds}")
  print(f"load average {os.getloadavg()[0]:.1f}; {args.seeds} seeds, {args.steps} steps x "
        f"{args.rounds} rounds, preset {args.preset}")
  print("| run | one after another (ms / step of all seeds) | together, vmap (ms) | together / "
        "one after another |")
  print("|---|---|---|---|")
  for name in args.runs.split(","):
    seq, vm, ratio = time_both(name.strip(), args)
    print(f"| {name} | {1e3 * seq:.1f} | {1e3 * vm:.1f} | {ratio:.2f} |", flush=True)
  print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
