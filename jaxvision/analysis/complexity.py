"""Model complexity: parameters, operations, memory and speed, and a Canziani et al. 2017 plot.

  python -m jaxvision.analysis.complexity --models alexnet,vgg16,googlenet,resnet18,resnet50,resnet152 \
      [--size 224] [--batch 32] [--timing auto|none|forward|all] [--accuracy torchvision|NAME=TOP1,...] \
      [--out DIR]

Per model and input size:
- params: from `jax.eval_shape` of the initialisation (nothing allocated);
- GMACs: multiply-accumulates of the convolutions and dense layers counted from the forward
  jaxpr, every kernel tap included (the convention of the published figures, e.g. 4.09 for
  ResNet-50 at 224);
- forward and training-step GFLOPs: XLA's cost analysis of the compiled functions, lowered on
  abstract inputs (jax.ShapeDtypeStruct). XLA counts a multiply-add as 2 FLOPs, skips the taps
  that fall on zero padding, and adds the elementwise work (BatchNorm, ReLU, the update);
- train peak memory: XLA's buffer assignment of the compiled training step (SGD with
  momentum, state donated) at `--batch`: arguments + outputs + temporaries - aliased;
- both counted on the model's own convolutions (`jaxvision.nn.conv.xla_convolutions`), the
  same on every backend: the CPU's im2col form of small convolutions would add the padding's
  multiplications and the patches' memory;
- latency (batch 1, eval) and training throughput (images/s at `--batch`): median of
  `--repeats` timed runs on the current device. `--timing auto` times the forward pass only on
  a CPU and both on an accelerator.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import pathlib
import statistics
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.extend import core as jex_core

from jaxvision.models import create_model, list_models, model_options
from jaxvision.nn.conv import xla_convolutions
from jaxvision.training import steps
from jaxvision.training.train_state import TrainState

# torchvision's published GMACs at 224x224 (its docs' "GFLOPS" column counts multiply-adds).
PUBLISHED_GMACS = {
    "alexnet": 0.71, "googlenet": 1.50, "vgg11": 7.61, "vgg11_bn": 7.61, "vgg13": 11.31,
    "vgg13_bn": 11.31, "vgg16": 15.47, "vgg16_bn": 15.47, "vgg19": 19.63, "vgg19_bn": 19.63,
    "resnet18": 1.81, "resnet34": 3.66, "resnet50": 4.09, "resnet101": 7.80, "resnet152": 11.51,
}
# ImageNet top-1 (%) of torchvision's IMAGENET1K_V1 weights, as torchvision publishes them
# (`--accuracy torchvision`; not measured here).
TORCHVISION_TOP1 = {
    "alexnet": 56.522, "googlenet": 69.778, "vgg11": 69.020, "vgg13": 69.928, "vgg16": 71.592,
    "vgg19": 72.376, "vgg16_bn": 73.360, "resnet18": 69.758, "resnet34": 73.314,
    "resnet50": 76.130, "resnet101": 77.374, "resnet152": 78.312,
}
TIMINGS = ("auto", "none", "forward", "all")


def count_macs(fn, *args) -> int:
  """Multiply-accumulates of the convolutions and dot products in `fn(*args)` (args may be
  jax.ShapeDtypeStruct), every kernel tap counted, scans multiplied by their length."""
  return _jaxpr_macs(jax.make_jaxpr(fn)(*args).jaxpr)


def _jaxpr_macs(jaxpr) -> int:
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      rhs = eqn.invars[1].aval
      rhs_out = rhs.shape[eqn.params["dimension_numbers"].rhs_spec[0]]
      total += eqn.outvars[0].aval.size * (rhs.size // rhs_out)  # taps x input channels / groups
    elif name == "dot_general":
      (contract, _), _ = eqn.params["dimension_numbers"]
      total += eqn.outvars[0].aval.size * math.prod(eqn.invars[0].aval.shape[d] for d in contract)
    subs = [_jaxpr_macs(getattr(j, "jaxpr", j)) for j in jex_core.jaxprs_in_params(eqn.params)]
    if name == "cond":
      total += max(subs, default=0)
    else:
      total += eqn.params.get("length", 1) * sum(subs) if name == "scan" else sum(subs)
  return total


def _xla_flops(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


def _peak_bytes(compiled) -> int | None:
  mem = compiled.memory_analysis()
  if mem is None:
    return None
  return int(mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
             - mem.alias_size_in_bytes)


def median_seconds(fn, repeats: int = 5) -> float:
  """Median wall time of `repeats` calls of `fn` (its result waited for), after one warm-up."""
  jax.block_until_ready(fn())  # warm-up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


class _Setup(NamedTuple):
  model: Any
  variables: Any  # abstract (jax.ShapeDtypeStruct leaves)
  image: Callable[[int], jax.ShapeDtypeStruct]
  tx: optax.GradientTransformation


def _setup(name: str, size: int, channels: int, num_classes: int, options: dict) -> _Setup:
  """The model, its abstract variables and image specs: nothing allocated."""
  if "scan" in model_options(name):
    options = {"scan": False, **options}  # XLA's cost analysis counts a rolled loop's body once
  model = create_model(name, num_classes=num_classes, **options)
  image = lambda b: jax.ShapeDtypeStruct((b, size, size, channels), jnp.float32)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(image(1).shape),
                                                train=False))
  return _Setup(model, variables, image, optax.sgd(0.1, momentum=0.9))


def _train_state(s: _Setup, variables) -> TrainState:
  return TrainState.create(apply_fn=s.model.apply, params=variables["params"],
                           batch_stats=variables.get("batch_stats", {}), tx=s.tx)


def _forward_fn(s: _Setup) -> Callable:
  return lambda v, x: s.model.apply(v, x, train=False)


def _train_step_fn():
  return jax.jit(steps.make_train_step(), donate_argnums=(0,))


def _forward(s: _Setup) -> dict:
  forward = _forward_fn(s)
  with xla_convolutions():
    compiled = jax.jit(forward).lower(s.variables, s.image(1)).compile()
    macs = count_macs(forward, s.variables, s.image(1))
  return {"params": int(sum(x.size for x in jax.tree.leaves(s.variables["params"]))),
          "gmacs": macs / 1e9, "forward_gflops": _xla_flops(compiled) / 1e9, "compiled": compiled}


def _train(s: _Setup, batch: int) -> dict:
  state = jax.eval_shape(functools.partial(_train_state, s), s.variables)
  batch_spec = {"image": s.image(batch), "label": jax.ShapeDtypeStruct((batch,), jnp.int32)}
  rng_spec = jax.eval_shape(lambda: jax.random.key(0))
  with xla_convolutions():
    compiled = _train_step_fn().lower(state, batch_spec, rng_spec).compile()
  return {"train_gflops_per_image": _xla_flops(compiled) / batch / 1e9,
          "train_peak_bytes": _peak_bytes(compiled), "compiled": compiled}


def forward_cost(name: str, *, size: int = 224, channels: int = 3, num_classes: int = 1000,
                 **options) -> dict:
  """params, GMACs (jaxpr) and forward GFLOPs (XLA) for one image, and the compiled forward
  (with XLA's convolutions, as counted)."""
  return _forward(_setup(name, size, channels, num_classes, options))


def train_step_cost(name: str, *, size: int = 224, batch: int = 32, channels: int = 3,
                    num_classes: int = 1000, **options) -> dict:
  """Training-step GFLOPs per image and peak bytes (XLA) at `batch`, and the compiled step
  (with XLA's convolutions, as counted)."""
  return _train(_setup(name, size, channels, num_classes, options), batch)


def analyze(name: str, *, size: int = 224, batch: int = 32, channels: int = 3,
            num_classes: int = 1000, timing: str = "auto", repeats: int = 5, **options) -> dict:
  """Complexity figures of registry model `name` (see the module docstring)."""
  if timing not in TIMINGS:
    raise ValueError(f"timing: expected one of {TIMINGS}, got {timing!r}")
  for arg, value in (("size", size), ("batch", batch), ("repeats", repeats)):
    if not isinstance(value, int) or value < 1:
      raise ValueError(f"{arg}: expected a positive int, got {value!r}")
  s = _setup(name, size, channels, num_classes, options)
  fwd, train = _forward(s), _train(s, batch)
  row = {"model": name, "size": size, "batch": batch,
         **{k: v for k, v in {**fwd, **train}.items() if k != "compiled"},
         "published_gmacs": PUBLISHED_GMACS.get(name) if size == 224 else None,
         "device": jax.devices()[0].device_kind, "latency_ms": None, "train_images_per_s": None}
  if timing == "none":
    return row
  real = jax.jit(functools.partial(s.model.init, train=False))(jax.random.key(0),
                                                               jnp.zeros(s.image(1).shape))
  x = jnp.asarray(np.random.RandomState(0).randn(*s.image(1).shape), jnp.float32)
  forward = jax.jit(_forward_fn(s))  # timed as it runs here (im2col on the CPU)
  row["latency_ms"] = 1e3 * median_seconds(lambda: forward(real, x), repeats)
  if timing == "all" or (timing == "auto" and jax.default_backend() != "cpu"):
    holder, train_step = [_train_state(s, real)], _train_step_fn()
    data = {"image": jnp.zeros(s.image(batch).shape), "label": jnp.zeros((batch,), jnp.int32)}

    def step():
      holder[0], metrics = train_step(holder[0], data, jax.random.key(1))
      return metrics

    row["train_images_per_s"] = batch / median_seconds(step, repeats)
  return row


def format_table(rows: Sequence[dict]) -> str:
  """A Markdown table of `analyze` rows."""
  def f(v, spec):
    return "-" if v is None else format(v, spec)
  batch = rows[0]["batch"] if rows else 0
  head = ["model", "params (M)", "GMACs", "published GMACs", "forward GFLOPs (XLA)",
          "train step GFLOPs/image (XLA)", f"train peak memory (GiB, batch {batch})",
          "latency (ms, batch 1)", "train images/s"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    mem = None if r["train_peak_bytes"] is None else r["train_peak_bytes"] / 2**30
    cells = [r["model"], f(r["params"] / 1e6, ".2f"), f(r["gmacs"], ".2f"),
             f(r["published_gmacs"], ".2f"), f(r["forward_gflops"], ".2f"),
             f(r["train_gflops_per_image"], ".2f"), f(mem, ".2f"), f(r["latency_ms"], ".1f"),
             f(r["train_images_per_s"], ".1f")]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot(rows: Sequence[dict], out: str | pathlib.Path, accuracy: dict | None = None) -> pathlib.Path:
  """Canziani et al. 2017: operations vs parameters (bubble area ~ training memory) and, with
  `accuracy` {model: top-1 %}, accuracy vs operations (bubble area ~ parameters)."""
  import matplotlib
  from matplotlib.figure import Figure  # no pyplot: the caller's backend untouched

  acc = {r["model"]: accuracy[r["model"]] for r in rows if accuracy and r["model"] in accuracy}
  fig = Figure(figsize=(13 if acc else 7, 5))
  axes = fig.subplots(1, 2 if acc else 1, squeeze=False)
  colors = matplotlib.colormaps["tab10"](np.arange(len(rows)) % 10)
  mems = [r["train_peak_bytes"] or 0 for r in rows]
  ax = axes[0, 0]
  for i, (r, c, m) in enumerate(zip(rows, colors, mems)):
    ax.scatter(r["forward_gflops"], r["params"] / 1e6, s=3000 * m / max(max(mems), 1) + 20,
               color=c, alpha=0.5, edgecolors="k")
    _label(ax, i, r["model"], (r["forward_gflops"], r["params"] / 1e6))
  ax.set_xlabel("operations: forward GFLOPs per image (XLA)")
  ax.set_ylabel("parameters (M)")
  ax.set_title(f"bubble area ~ training-step peak memory (batch {rows[0]['batch']})")
  if acc:
    ax = axes[0, 1]
    for i, (r, c) in enumerate(zip(rows, colors)):
      if r["model"] in acc:
        ax.scatter(r["forward_gflops"], acc[r["model"]], s=r["params"] / 1e5 + 20, color=c,
                   alpha=0.5, edgecolors="k")
        _label(ax, i, r["model"], (r["forward_gflops"], acc[r["model"]]))
    ax.set_xlabel("operations: forward GFLOPs per image (XLA)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("bubble area ~ parameters")
  for a in axes.ravel():
    a.grid(alpha=0.3)
    a.margins(0.15)
  fig.suptitle(f"{rows[0]['size']}x{rows[0]['size']} input, {rows[0]['device']}")
  fig.tight_layout()
  out = pathlib.Path(out)
  fig.savefig(out, dpi=110)
  return out


def _label(ax, i: int, text: str, xy) -> None:
  """Labels beside the bubble centre, alternately above and below (neighbours overlap less)."""
  ax.plot(*xy, "k.", markersize=3)
  ax.annotate(text, xy, fontsize=8, xytext=(14, 14 if i % 2 == 0 else -18), textcoords="offset points",
              arrowprops={"arrowstyle": "-", "lw": 0.6})


def parse_accuracy(text: str) -> dict:
  """'torchvision' (TORCHVISION_TOP1) or 'name=top1,name=top1'."""
  if not text:
    return {}
  if text == "torchvision":
    return dict(TORCHVISION_TOP1)
  out = {}
  for item in text.split(","):
    name, sep, value = item.partition("=")
    try:
      out[name.strip()] = float(value)
    except ValueError:
      sep = ""
    if not sep:
      raise ValueError(f"--accuracy: expected 'torchvision' or NAME=TOP1,..., got {item!r}")
  return out


def main(argv: Sequence[str] | None = None) -> list[dict]:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--models", default="alexnet,vgg16,googlenet,resnet18,resnet50,resnet152")
  p.add_argument("--size", type=int, default=224)
  p.add_argument("--batch", type=int, default=32, help="batch of the training step")
  p.add_argument("--num-classes", type=int, default=1000)
  p.add_argument("--timing", choices=TIMINGS, default="auto")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--accuracy", default="", help="'torchvision' or NAME=TOP1,... for the plot")
  p.add_argument("--out", default="", help="folder for complexity.{md,json,png}")
  args = p.parse_args(argv)
  names = [n.strip() for n in args.models.split(",") if n.strip()]
  unknown = [n for n in names if n not in list_models()]
  if unknown:
    p.error(f"--models: unknown model(s) {unknown}; expected some of {list_models()}")
  accuracy = parse_accuracy(args.accuracy)
  rows = []
  for n in names:
    rows.append(analyze(n, size=args.size, batch=args.batch, num_classes=args.num_classes,
                        timing=args.timing, repeats=args.repeats))
    print(f"{n}: done", flush=True)
  table = format_table(rows)
  print(table)
  if args.out:
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "complexity.md").write_text(table + "\n")
    (out / "complexity.json").write_text(json.dumps(rows, indent=2))
    print(f"plot: {plot(rows, out / 'complexity.png', accuracy)}")
  return rows


if __name__ == "__main__":
  main()
