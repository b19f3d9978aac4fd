"""Benchmark: one training step of the same network in jaxvision and in torchvision, side by side.

  python bench/vs_torch.py                                  # ResNet-18, batch 32, 64x64
  python bench/vs_torch.py --model resnet50 --batch 16 --size 64
  python bench/vs_torch.py --model cifar_resnet20 --batch 128 --size 32 --num-classes 10
  python bench/vs_torch.py --before                         # an emulation of the pre-fix code
  python bench/vs_torch.py --xla-flags=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution

One training step = forward, cross-entropy, backward and an SGD update with momentum 0.9 (no
weight decay) on the same synthetic batch: jaxvision's jitted train step (state donated) against
torchvision's model in eager mode (cifar_resnet20: He et al.'s option-A network, written here;
torchvision has none). Each framework runs in its own process, so that neither's threads spin on
the other's cores and XLA flags apply to JAX alone; the two are asked for `--steps` steps in
turn, `--rounds` times (a busy machine slows both alike), and the median over rounds of
(JAX median / torch median) is printed, with the load average. torch gets
`torch.set_num_threads(--threads)`; XLA:CPU uses one thread per core (the default, all cores).
torch is imported only here, never by jaxvision or its tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.cli import load, parse_options  # noqa: E402  (no JAX import)


@dataclasses.dataclass
class Spec:
  """What one worker process builds: a framework and the shared problem."""
  framework: str          # "jax" | "torch"
  model: str
  batch: int
  size: int
  num_classes: int
  dtype: str = "fp32"
  label: str = ""
  threads: int = 0        # torch intra-op threads (0: all cores)
  channels_last: bool = True
  xla_flags: str = ""     # appended to XLA_FLAGS in the JAX worker
  jax_config: dict = dataclasses.field(default_factory=dict)  # jax.config.update(k, v)
  options: dict = dataclasses.field(default_factory=dict)     # model options (JAX)
  conv: str = "default"   # JAX residual-network convolutions: "default" (jaxvision.nn.conv),
                          # "xla" (XLA's everywhere) or "patches" (im2col everywhere)
  small_output: int | None = None  # "default": im2col up to this many output pixels on CPU
  before: bool = False    # emulate the pre-fix code: XLA convolutions, one-trip loops


# ---------------------------------------------------------------------------------------------
# Workers: build the step, report (label, parameter count, first-step seconds), then run
# `n` steps per request and send back their times.


def _worker(conn, spec: Spec):
  try:
    step, info = _build_jax(spec) if spec.framework == "jax" else _build_torch(spec)
    t = time.perf_counter()
    step()
    info["first_s"] = time.perf_counter() - t
    step()  # a second warm-up step (allocator, oneDNN primitive caches)
    conn.send(info)
    while (n := conn.recv()) is not None:
      times = []
      for _ in range(n):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
      conn.send(times)
  except BaseException as e:  # report, rather than leave the parent waiting
    conn.send(e)
    raise


def _build_jax(spec: Spec):
  if spec.xla_flags:
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {spec.xla_flags}".strip()
  import jax
  for key, value in spec.jax_config.items():
    jax.config.update(key, value)
  if spec.before:
    _before_cpu_fixes()
  elif spec.conv != "default":
    _force_conv(spec.conv)
  if spec.small_output is not None:
    from jaxvision.nn import conv
    conv.SMALL_OUTPUT = spec.small_output
  from bench.train_step import TrainStep

  ts = TrainStep(spec.model, spec.batch, spec.size, spec.dtype, 3, spec.num_classes,
                 **spec.options)
  compiled = ts.compile()["compiled"]
  state = ts.init()
  params = sum(a.size for a in jax.tree.leaves(state.params))

  def step():
    nonlocal state
    state, metrics = compiled(state, ts.data, ts.rng)
    jax.block_until_ready((state, metrics))

  return step, {"params": params}


def _force_conv(name: str):
  """Every residual-network convolution as XLA's ("xla") or as im2col + matmul ("patches")."""
  import functools

  from jax import lax

  from jaxvision.nn import ode, residual
  impl = {"xla": lax.conv_general_dilated, "patches": ode.patches_conv}[name]
  residual.conv = functools.partial(residual.conv, conv_general_dilated=impl)


def _before_cpu_fixes():
  """An emulation of jaxvision before its CPU fixes, patched into today's code at run time (for
  the "before" rows of docs/BENCHMARKS.md; not the old code itself): XLA's
  convolution everywhere, and a one-block scanned stage compiled as a loop of one trip."""
  import jax

  from jaxvision.nn.residual import ResidualStage
  _force_conv("xla")

  def unroll(self):
    default = self.num_blocks if jax.default_backend() == "cpu" else 1
    return min(self.scan_unroll or default, self.num_blocks)

  ResidualStage._unroll = unroll


def _build_torch(spec: Spec):
  import torch
  import torch.nn.functional as F
  import torchvision

  torch.set_num_threads(spec.threads or os.cpu_count())
  torch.manual_seed(0)
  if spec.model.startswith("cifar_resnet"):
    model = cifar_resnet(int(spec.model[len("cifar_resnet"):]), spec.num_classes)
  else:
    model = getattr(torchvision.models, spec.model)(num_classes=spec.num_classes)
  x = torch.randn(spec.batch, 3, spec.size, spec.size)
  y = torch.randint(0, spec.num_classes, (spec.batch,))
  if spec.channels_last:
    model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
  model.train()
  opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
  autocast = spec.dtype == "bf16"

  def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
      loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()

  return step, {"params": sum(p.numel() for p in model.parameters()),
                "threads": torch.get_num_threads()}


def cifar_resnet(depth: int, num_classes: int):
  """He et al. 2015's CIFAR ResNet (6n+2 layers, 16/32/64 filters, option-A shortcuts) in torch."""
  import torch
  from torch import nn
  import torch.nn.functional as F

  class Block(nn.Module):

    def __init__(self, cin, cout, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(cout)
      self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(cout)
      self.stride, self.extra = stride, cout - cin

    def forward(self, x):
      y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
      s = x[:, :, ::self.stride, ::self.stride]
      if self.extra:
        s = F.pad(s, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
      return F.relu(y + s)

  n = (depth - 2) // 6
  layers, cin = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
  for i, width in enumerate((16, 32, 64)):
    for j in range(n):
      layers.append(Block(cin, width, 2 if i and not j else 1))
      cin = width
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)]
  return torch.nn.Sequential(*layers)


# ---------------------------------------------------------------------------------------------


def alternate(specs: list[Spec], rounds: int, steps: int) -> list[dict]:
  """Starts one worker per spec, then asks each for `steps` steps in turn, `rounds` times.

  Returns per spec: label, params, first_s, median_s (over all timed steps) and per-round
  medians `round_s`.
  """
  ctx = mp.get_context("spawn")
  workers = []
  for spec in specs:
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_worker, args=(child, spec), daemon=True)
    proc.start()
    workers.append((spec, parent, proc))
  try:
    results = []
    for spec, conn, proc in workers:  # all build (compile) at once; timing starts when all are ready
      info = _receive(conn, proc)
      results.append({"label": spec.label or spec.framework, **info, "round_s": [], "times": []})
    for _ in range(rounds):
      for (_, conn, proc), r in zip(workers, results):
        conn.send(steps)
        times = _receive(conn, proc)
        r["times"] += times
        r["round_s"].append(statistics.median(times))
    for r in results:
      r["median_s"] = statistics.median(r.pop("times"))
    return results
  finally:
    for _, conn, proc in workers:
      try:
        conn.send(None)
      except (BrokenPipeError, OSError):
        pass
      proc.join(timeout=30)
      if proc.is_alive():
        proc.terminate()


def _receive(conn, proc):
  """The worker's next message; an error if it raised, or died (a crash, an XLA flag it rejects)."""
  while not conn.poll(1.0):
    if not proc.is_alive():
      raise RuntimeError(f"a benchmark worker died (exit code {proc.exitcode})")
  msg = conn.recv()
  if isinstance(msg, BaseException):
    raise RuntimeError("a benchmark worker failed") from msg
  return msg


def ratio(a: dict, b: dict) -> float:
  """Median over rounds of a's round median / b's round median."""
  return statistics.median(x / y for x, y in zip(a["round_s"], b["round_s"]))


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--model", default="resnet18",
                 help="resnet18/34/50/101/152 (torchvision) or cifar_resnet20/32/44/56/110")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--size", type=int, default=64)
  p.add_argument("--num-classes", type=int, default=1000)
  p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                 help="bf16: jaxvision dtype=bfloat16; torch autocast to bfloat16")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--steps", type=int, default=3, help="steps per framework per round")
  p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
  p.add_argument("--no-channels-last", action="store_true", help="torch in NCHW memory format")
  p.add_argument("--xla-flags", default="", help="extra XLA_FLAGS for the JAX worker")
  p.add_argument("--before", action="store_true",
                 help="emulate jaxvision before its CPU fixes by patching today's code at run "
                      "time (XLA convolutions everywhere, one-block stages as one-trip loops), "
                      "for the 'before' rows")
  p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                 help="a jaxvision model option (repeatable), e.g. scan=False")
  p.add_argument("--conv", choices=("default", "xla", "patches"), default="default",
                 help="JAX residual-network convolutions: jaxvision's choice (jaxvision.nn.conv: "
                      "im2col for small outputs on CPU), XLA's everywhere (the behaviour before "
                      "that), or im2col everywhere")
  a = p.parse_args()
  common = dict(model=a.model, batch=a.batch, size=a.size, num_classes=a.num_classes,
                dtype=a.dtype)
  specs = [Spec("jax", label="jaxvision", xla_flags=a.xla_flags, conv=a.conv, before=a.before,
                options=parse_options(a.option), **common),
           Spec("torch", label="torchvision", threads=a.threads,
                channels_last=not a.no_channels_last, **common)]
  print(f"{a.model} batch={a.batch} size={a.size} dtype={a.dtype}, {a.rounds} rounds x "
        f"{a.steps} steps, {os.cpu_count()} cores ({load()})")
  jx, th = alternate(specs, a.rounds, a.steps)
  for r in (jx, th):
    print(f"  {r['label']:12s} params {r['params']:,}  first step {r['first_s']:.2f}s  "
          f"median step {1e3 * r['median_s']:.0f} ms  ({a.batch / r['median_s']:.1f} img/s)")
  print(f"  jaxvision / torchvision step time: {ratio(jx, th):.2f}x (median over rounds; "
        f"torch threads {th['threads']}) ({load()})")


if __name__ == "__main__":
  main()
