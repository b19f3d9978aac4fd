"""Benchmark: peak memory of the compiled training step against depth, from XLA's memory analysis.

  python bench/memory_depth.py                        # writes docs/images/memory_vs_depth.png
  python bench/memory_depth.py --depths 1 4 16 64 --batch 64 --width 32

One network, Chen et al.'s ODE-Net layout (`odenet`: stem, middle, GroupNorm-pool-Dense head),
whose middle integrates dh/dt = f(t, h) over [0, 1] in N steps with one shared f (so the
parameters do not grow with N and the activations are what changes):

  plain           a residual stage of N blocks h + (1/N) f(t, h) (`middle="residual"`,
                  `share_weights=True`): backpropagation stores every block's activations,
                  memory linear in N;
  remat           the same stage with `remat=True`: each block is recomputed in the backward
                  pass, only its input is stored: linear with a smaller slope;
  ode recursive   the ODE block, explicit Euler with dt = 1/N (the same arithmetic as the
                  stage), backpropagating through the solver with diffrax's
                  RecursiveCheckpointAdjoint (O(sqrt N) checkpoints): sub-linear;
  ode backsolve   the same solve with BacksolveAdjoint (the adjoint ODE solved backwards):
                  constant in N.

The residual stages stay rolled (`scan_unroll=1`): only compiled, never run, so XLA:CPU's slow
convolution backward pass inside loops does not matter. Peak memory is XLA's
`compiled.memory_analysis()` of the jitted train step (parameters, optimizer state, batch,
temporaries: arguments + unaliased outputs + temporaries), on abstract parameters.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.cli import load  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = {
    "plain": dict(middle="residual", share_weights=True, scan_unroll=1),
    "remat": dict(middle="residual", share_weights=True, scan_unroll=1, remat=True),
    "ode recursive": dict(middle="ode", solver="euler", controller="constant",
                          adjoint="recursive_checkpoint"),
    "ode backsolve": dict(middle="ode", solver="euler", controller="constant",
                          adjoint="backsolve"),
}
COLORS = {"plain": "C0", "remat": "C1", "ode recursive": "C2", "ode backsolve": "C3"}
GROWTH = {"plain": "linear", "remat": "linear, smaller slope", "ode recursive": "sub-linear",
          "ode backsolve": "constant"}


def options(variant: str, depth: int, width: int) -> dict:
  opts = dict(VARIANTS[variant], width=width, downsampling=1)
  if opts["middle"] == "residual":
    opts["num_blocks"] = depth
  else:
    opts["dt"] = 1.0 / depth
  return opts


def memory(variant: str, depth: int, batch: int, size: int, width: int) -> dict:
  """XLA's memory analysis of the compiled train step, in MiB."""
  from bench.train_step import TrainStep

  ts = TrainStep("odenet", batch, size, channels=1, num_classes=10,
                 **options(variant, depth, width))
  m = ts.compile()["compiled"].memory_analysis()
  mib = 2.0 ** 20
  # Live at once at worst: inputs, outputs not aliased to (donated) inputs, and temporaries.
  # (`peak_memory_in_bytes` is not filled in by XLA:CPU in jax 0.10.)
  peak = (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
          + m.temp_size_in_bytes)
  return {"peak_mib": peak / mib, "temp_mib": m.temp_size_in_bytes / mib,
          "argument_mib": m.argument_size_in_bytes / mib}


def plot(results: dict, depths: list[int], path: str, title: str) -> None:
  """Peak memory against depth: all variants (left), and without the plain stage (right)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
  for ax, variants in zip(axes, (list(results), [v for v in results if v != "plain"])):
    for variant in variants:
      ax.plot(depths, [results[variant][d]["peak_mib"] for d in depths], "o-",
              color=COLORS[variant], label=f"{variant} ({GROWTH[variant]})")
    ax.set_xlabel("depth N (residual blocks / Euler steps over [0, 1])")
    ax.set_ylabel("peak memory of the train step (MiB)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
  axes[1].set_title("the same without the plain stage", fontsize=9)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=120)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--depths", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128])
  p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--size", type=int, default=28, help="input height and width (1 channel)")
  p.add_argument("--width", type=int, default=64, help="channels of the ODE state")
  p.add_argument("--out", default=os.path.join(ROOT, "docs", "images", "memory_vs_depth.png"))
  a = p.parse_args()
  import jax

  title = (f"odenet, batch {a.batch}, {a.size}x{a.size}x1, {a.width} channels; "
           f"XLA memory analysis on {jax.devices()[0].device_kind}")
  print(f"{title} ({load()})")
  print("| middle | growth | " + " | ".join(f"N={d}" for d in a.depths) + " |")
  print("|---|---|" + "---|" * len(a.depths))
  results = {}
  for variant in a.variants:
    results[variant] = {d: memory(variant, d, a.batch, a.size, a.width) for d in a.depths}
    cells = " | ".join(f"{results[variant][d]['peak_mib']:.1f}" for d in a.depths)
    print(f"| {variant} | {GROWTH[variant]} | {cells} |", flush=True)
  print(f"peak MiB; parameters + optimizer state + batch (arguments): "
        f"{results[a.variants[0]][a.depths[0]]['argument_mib']:.1f} MiB ({load()})")
  plot(results, a.depths, a.out, title)
  print(f"wrote {a.out}")


if __name__ == "__main__":
  main()
