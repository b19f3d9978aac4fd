"""The accelerator suite: one command, one markdown table, for the day a GPU is lent.

  python bench/gpu_suite.py --out gpu_suite.md            # one H100: about 6-8 minutes
  python bench/gpu_suite.py --smoke                       # the same code, tiny sizes, on the CPU

Sections (each a table in the output):
1. ResNet-18/50/152, bf16 compute / fp32 parameters, batch 256, 224x224, SGD with momentum:
   first-step compile time with the rolled scan, median step, train images/s, GFLOP per step
   (XLA's cost analysis), MFU against the device's peak (bench/train_step.PEAK_FLOPS) and the
   compiled step's memory (XLA's memory analysis: arguments + outputs + temporaries - aliased).
2. torchvision in the same run (where torch imports): eager (channels_last, bf16 autocast) and
   torch.compile, images/s and first step, with the ratio jaxvision / torch.compile.
3. fit against the bare jitted step (bench/fit_overhead.py): the training loop's overhead.
4. The ODE-Net grid against torchdiffeq (bench/ode_vs_torchdiffeq.py) where torchdiffeq imports:
   6x6 and 32x32 states, fixed-step midpoint and dopri5, backprop through the solver and adjoint.

Targets (../shared/FIELD_NOTES.md, issue 17): ResNet-50 >= 7,000 img/s and >= 1.25x torch.compile;
ResNet-152 first step <= 15 s; the ODE block >= 1.5x torchdiffeq in every cell.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import fit_overhead, ode_vs_torchdiffeq, train_step  # noqa: E402
from bench.cli import load  # noqa: E402

ODE_CELLS = tuple((solver, adjoint) for solver in ("midpoint", "dopri5")
                  for adjoint in ("recursive_checkpoint", "backsolve"))
FULL = dict(models=("resnet18", "resnet50", "resnet152"), batch=256, size=224, steps=20,
            compile_models=("resnet18", "resnet50"), ode_sizes=(28, 130), ode_cells=ODE_CELLS,
            ode_batch=128, ode_steps=10,
            fit=dict(model="cifar_resnet20", batch=128, size=32, steps=100))
SMOKE = dict(models=("resnet18",), batch=4, size=32, steps=2, compile_models=(),
             ode_sizes=(28,), ode_cells=ODE_CELLS[::3], ode_batch=8, ode_steps=1,
             fit=dict(model="cifar_resnet20", batch=16, size=32, steps=10))


def _fmt(value, spec: str) -> str:
  """`spec` applied to `value`; "n/a" where there is none (a framework not installed here)."""
  return "n/a" if value is None else spec.format(value)


def _mib(n: float) -> str:
  return f"{n / 2**20:,.0f}"


def memory_bytes(compiled) -> float:
  """Device memory a compiled step needs: arguments + outputs + temporaries - aliased (donated)."""
  m = compiled.memory_analysis()
  if m is None:
    return float("nan")
  return float(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
               - m.alias_size_in_bytes)


def jax_resnet(name: str, batch: int, size: int, steps: int) -> dict:
  ts = train_step.TrainStep(name, batch, size, "bf16")
  t0 = time.perf_counter()
  compiled = ts.compile()["compiled"]
  state, _ = train_step.time_steps(compiled, ts.init(), ts.data, ts.rng, 1)
  first_s = time.perf_counter() - t0  # lowering + compilation + the first step, as a user waits
  _, times = train_step.time_steps(compiled, state, ts.data, ts.rng, steps)
  median = statistics.median(times)
  flops = train_step.flops_of(compiled)
  peak = train_step.peak_flops(jax.devices()[0], "bf16")
  return {"model": name, "first_s": first_s, "step_ms": 1e3 * median, "ips": batch / median,
          "gflop": flops / 1e9, "mfu": flops / median / peak if peak else None,
          "memory": memory_bytes(compiled)}


def torch_resnet(name: str, batch: int, size: int, steps: int, compiled: bool) -> dict:
  """torchvision's `name` training step: channels_last, bf16 autocast, SGD with momentum."""
  import torch
  import torch.nn.functional as F
  import torchvision

  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch.manual_seed(0)
  model = getattr(torchvision.models, name)(num_classes=1000).to(device)
  model = model.to(memory_format=torch.channels_last).train()
  x = torch.randn(batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
  y = torch.randint(0, 1000, (batch,), device=device)
  opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
  forward = torch.compile(model) if compiled else model

  def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device, dtype=torch.bfloat16):
      loss = F.cross_entropy(forward(x), y)
    loss.backward()
    opt.step()
    if device == "cuda":
      torch.cuda.synchronize()

  t0 = time.perf_counter()
  step()
  first_s = time.perf_counter() - t0
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
  median = statistics.median(times)
  return {"first_s": first_s, "step_ms": 1e3 * median, "ips": batch / median}


def resnet_section(s: dict, torch_ok: bool) -> list[str]:
  rows = ["| model | jaxvision img/s | step ms | first step s | GFLOP/step | MFU | memory MiB | "
          "torch eager img/s | torch.compile img/s | torch.compile first step s | "
          "jaxvision / torch.compile |", "|---" * 11 + "|"]
  for name in s["models"]:
    j = jax_resnet(name, s["batch"], s["size"], s["steps"])
    eager = comp = None
    if torch_ok:
      eager = torch_resnet(name, s["batch"], s["size"], s["steps"], compiled=False)
      if name in s["compile_models"]:
        comp = torch_resnet(name, s["batch"], s["size"], s["steps"], compiled=True)
    mfu = _fmt(j["mfu"] and 100 * j["mfu"], "{:.1f}%")
    rows.append(
        f"| {name} | {j['ips']:,.0f} | {j['step_ms']:.1f} | {j['first_s']:.1f} | {j['gflop']:,.0f} "
        f"| {mfu} | {_mib(j['memory'])} | {_fmt(eager and eager['ips'], '{:,.0f}')} | "
        f"{_fmt(comp and comp['ips'], '{:,.0f}')} | {_fmt(comp and comp['first_s'], '{:.1f}')} "
        f"| {_fmt(comp and j['ips'] / comp['ips'], '{:.2f}x')} |")
  return rows


def fit_section(s: dict) -> list[str]:
  f = s["fit"]
  r = fit_overhead.measure(f["model"], f["batch"], f["size"], f["steps"])
  return ["| model | batch | fit img/s | bare step img/s | ratio |", "|---|---|---|---|---|",
          f"| {f['model']} | {f['batch']} | {r['fit_ips']:,.0f} | {r['bare_ips']:,.0f} | "
          f"{r['ratio']:.2f} |"]


def ode_section(s: dict, torch_ok: bool) -> list[str]:
  rows = ["| state | solver | gradient | jaxvision ms | torchdiffeq ms | speed-up | NFE fwd/bwd (jax) |",
          "|---" * 7 + "|"]
  for size in s["ode_sizes"]:
    for solver, adjoint in s["ode_cells"]:
      args = ode_vs_torchdiffeq.parser().parse_args(
          ["--size", str(size), "--solver", solver, "--adjoint", adjoint, "--batch",
           str(s["ode_batch"]), "--steps", str(s["ode_steps"]),
           "--only", "both" if torch_ok else "jax"])
      res = ode_vs_torchdiffeq.measure(args)
      jx = res[0]
      th = res[1] if len(res) > 1 else None
      side = {28: "6x6", 130: "32x32"}.get(size, f"input {size}")
      gradient = "backprop" if adjoint == "recursive_checkpoint" else "adjoint"
      rows.append(f"| {side} | {solver} | {gradient} | {1e3 * jx['median_s']:.1f} | "
                  f"{_fmt(th and 1e3 * th['median_s'], '{:.1f}')} | "
                  f"{_fmt(th and th['median_s'] / jx['median_s'], '{:.2f}x')} | "
                  f"{jx['nfe_fwd']:.0f}/{jx['nfe_bwd']:.0f} |")
  return rows


def available(module: str) -> bool:
  return importlib.util.find_spec(module) is not None


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--smoke", action="store_true", help="tiny sizes, for the CPU and CI")
  p.add_argument("--out", default="", help="also write the markdown to this file")
  p.add_argument("--no-torch", action="store_true", help="leave torch out even where it imports")
  a = p.parse_args()
  s = SMOKE if a.smoke else FULL
  torch_ok = not a.no_torch and available("torch") and available("torchvision")
  ode_torch_ok = not a.no_torch and available("torch") and available("torchdiffeq")
  device = jax.devices()[0]
  t0 = time.perf_counter()
  lines = [f"## GPU suite on {device.device_kind} ({jax.device_count()} x {device.platform}), "
           f"jax {jax.__version__}{' (smoke)' if a.smoke else ''}", "",
           f"ResNets: batch {s['batch']}, {s['size']}x{s['size']}, bf16 compute, fp32 params", ""]
  lines += resnet_section(s, torch_ok)
  lines += ["", "fit against the bare jitted step (bench/fit_overhead.py)", ""] + fit_section(s)
  lines += ["", "ODE-Net (odenet_mnist) train step against torchdiffeq, batch "
            f"{s['ode_batch']}", ""] + ode_section(s, ode_torch_ok)
  lines += ["", f"`python bench/gpu_suite.py{' --smoke' if a.smoke else ''}`: "
            f"{time.perf_counter() - t0:.0f} s, {load()}"]
  text = "\n".join(lines)
  print(text)
  if a.out:
    with open(a.out, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
