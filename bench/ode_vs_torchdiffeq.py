"""Benchmark: one training step of Chen et al.'s MNIST ODE-Net, jaxvision (diffrax) vs torchdiffeq.

  python bench/ode_vs_torchdiffeq.py                        # both (torch + torchdiffeq needed)
  python bench/ode_vs_torchdiffeq.py --only jax             # the jaxvision half alone
  python bench/ode_vs_torchdiffeq.py --adjoint backsolve --solver midpoint --dt 0.1
  python bench/ode_vs_torchdiffeq.py --only jax --solver midpoint --conv-impl xla  # ablations

The model of torchdiffeq's examples/odenet_mnist.py (`odenet_mnist`: downsampling to 64 x 6 x 6,
ODEfunc GN-ReLU-ConcatConv-GN-ReLU-ConcatConv-GN over t in [0, 1], GN-ReLU-pool-Linear head) on
the same weights (jaxvision's initialisation copied into the torch model), the same solver and
tolerances (dopri5, rtol = atol = 1e-3 by default), batch (128), optimizer (SGD, momentum 0.9,
lr 0.1) and synthetic MNIST-shaped data. `--adjoint recursive_checkpoint` backpropagates through
the solver (torchdiffeq: `odeint`); `backsolve` solves the adjoint ODE (`odeint_adjoint`).

Per framework: first step (compilation), median step time over `--steps` steps after it (the
two frameworks' steps alternate, so that a busy machine slows both alike), and
NFE of the forward and backward passes on the first batch (torchdiffeq: the ODEfunc's counter
as in its example; jaxvision: the sown `nfe` and `EvaluationCounter`'s VJPs). torch is
imported only for its half; timings wait on `block_until_ready` / `cuda.synchronize`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvision.models import create_model
from jaxvision.nn.ode import EvaluationCounter
from jaxvision.training import steps
from jaxvision.training.train_state import create_train_state

TORCH_ADJOINT = {"recursive_checkpoint": False, "backsolve": True}


def synthetic_batch(batch: int, size: int) -> dict:
  rs = np.random.RandomState(0)
  return {"image": rs.randn(batch, size, size, 1).astype(np.float32),
          "label": rs.randint(0, 10, batch).astype(np.int32)}


def jax_model(args):
  fixed = dict(controller="constant", dt=args.dt) if args.solver != "dopri5" else {}
  return create_model("odenet_mnist", num_classes=10, solver=args.solver, rtol=args.tol,
                      atol=args.tol, adjoint=args.adjoint, checkpoints=args.checkpoints,
                      conv_impl=args.conv_impl, **fixed)


def alternate(runners: list[dict], n: int) -> None:
  """Times each runner's first step, then `n` more steps of each in turn (so that a busy machine
  slows both frameworks alike); stores `first_s` and `median_s` in each runner."""
  times = {id(r): [] for r in runners}
  for r in runners:
    t = time.perf_counter()
    r["step"]()
    r["first_s"] = time.perf_counter() - t
  for _ in range(n):
    for r in runners:
      t = time.perf_counter()
      r["step"]()
      times[id(r)].append(time.perf_counter() - t)
  for r in runners:
    r["median_s"] = statistics.median(times[id(r)])


def bench_jax(args, params, batch) -> dict:
  model = jax_model(args)
  state = create_train_state(model, optax.sgd(args.lr, momentum=0.9), jax.random.key(0),
                             (args.size, args.size, 1)).replace(params=params)
  data = jax.tree.map(jnp.asarray, batch)

  def loss(p):
    logits, inter = model.apply({"params": p}, data["image"], train=True, mutable=["intermediates"])
    labels = jax.nn.one_hot(data["label"], 10)
    return -jnp.mean(jnp.sum(labels * jax.nn.log_softmax(logits), -1)), inter["intermediates"]

  with EvaluationCounter() as count:  # NFE on the first batch (a separate, counting compile)
    _, inter = jax.jit(jax.grad(loss, has_aux=True))(params)
    nfe_fwd = float(steps.intermediate_metrics(inter, ("nfe",))["nfe"])
  nfe_bwd = float(count.vjps)

  train_step = jax.jit(steps.make_train_step(), donate_argnums=(0,))
  rng = jax.random.key(1)
  holder = [state]

  def step():
    holder[0] = jax.block_until_ready(train_step(holder[0], data, rng)[0])

  return {"framework": f"jaxvision+diffrax (jax {jax.__version__})",
          "device": jax.devices()[0].device_kind, "step": step, "nfe_fwd": nfe_fwd,
          "nfe_bwd": nfe_bwd}


# ------------------------------------------------------------------ torchdiffeq's example

def torch_odenet(tol: float, adjoint: bool, method: str, dt: float | None):
  """torchdiffeq's examples/odenet_mnist.py network (its classes, condensed)."""
  import torch
  from torch import nn
  from torchdiffeq import odeint, odeint_adjoint

  def norm(dim):
    return nn.GroupNorm(min(32, dim), dim)

  class ConcatConv2d(nn.Module):
    def __init__(self, dim_in, dim_out):
      super().__init__()
      self._layer = nn.Conv2d(dim_in + 1, dim_out, 3, 1, 1)

    def forward(self, t, x):
      tt = torch.ones_like(x[:, :1, :, :]) * t
      return self._layer(torch.cat([tt, x], 1))

  class ODEfunc(nn.Module):
    def __init__(self, dim):
      super().__init__()
      self.norm1, self.norm2, self.norm3 = norm(dim), norm(dim), norm(dim)
      self.relu = nn.ReLU(inplace=True)
      self.conv1, self.conv2 = ConcatConv2d(dim, dim), ConcatConv2d(dim, dim)
      self.nfe = 0

    def forward(self, t, x):
      self.nfe += 1
      out = self.conv1(t, self.relu(self.norm1(x)))
      out = self.conv2(t, self.relu(self.norm2(out)))
      return self.norm3(out)

  class ODEBlock(nn.Module):
    def __init__(self, odefunc):
      super().__init__()
      self.odefunc = odefunc
      self.integration_time = torch.tensor([0, 1]).float()

    def forward(self, x):
      solve = odeint_adjoint if adjoint else odeint
      options = {"step_size": dt} if dt else None
      out = solve(self.odefunc, x, self.integration_time.type_as(x), rtol=tol, atol=tol,
                  method=method, options=options)
      return out[1]

  func = ODEfunc(64)
  model = nn.Sequential(
      nn.Conv2d(1, 64, 3, 1), norm(64), nn.ReLU(inplace=True), nn.Conv2d(64, 64, 4, 2, 1),
      norm(64), nn.ReLU(inplace=True), nn.Conv2d(64, 64, 4, 2, 1), ODEBlock(func), norm(64),
      nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(64, 10))
  return model, func


def torch_state_dict(params) -> dict:
  """jaxvision `odenet_mnist` parameters as the torch Sequential's state dict."""
  import torch

  def conv(p):
    return {"weight": np.transpose(p["kernel"], (3, 2, 0, 1)), "bias": p["bias"]}

  def gn(p):
    return {"weight": p["scale"], "bias": p["bias"]}

  f = params["middle"]["f"]
  parts = {"0": conv(params["conv1"]), "1": gn(params["norm1"]), "3": conv(params["conv2"]),
           "4": gn(params["norm2"]), "6": conv(params["conv3"]),
           "7.odefunc.norm1": gn(f["norm1"]), "7.odefunc.conv1._layer": conv(f["conv1"]["conv"]),
           "7.odefunc.norm2": gn(f["norm2"]), "7.odefunc.conv2._layer": conv(f["conv2"]["conv"]),
           "7.odefunc.norm3": gn(f["norm3"]), "8": gn(params["head_norm"]),
           "12": {"weight": np.transpose(params["fc"]["kernel"]), "bias": params["fc"]["bias"]}}
  return {f"{prefix}.{k}": torch.tensor(np.asarray(v)) for prefix, p in parts.items()
          for k, v in p.items()}


def bench_torch(args, params, batch) -> dict:
  import torch
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  dt = args.dt if args.solver != "dopri5" else None
  model, func = torch_odenet(args.tol, TORCH_ADJOINT[args.adjoint], args.solver, dt)
  model.load_state_dict(torch_state_dict(params))
  model.to(device)
  x = torch.tensor(np.transpose(batch["image"], (0, 3, 1, 2))).to(device)
  y = torch.tensor(batch["label"]).long().to(device)
  opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
  loss_fn = torch.nn.CrossEntropyLoss()
  nfe = {}

  def step():
    opt.zero_grad()
    func.nfe = 0
    loss = loss_fn(model(x), y)
    nfe.setdefault("fwd", func.nfe)
    func.nfe = 0
    loss.backward()
    nfe.setdefault("bwd", func.nfe)
    opt.step()
    if device.type == "cuda":
      torch.cuda.synchronize()

  name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
  return {"framework": f"torchdiffeq (torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads)", "device": name, "step": step, "nfe": nfe}


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--only", choices=("jax", "torch", "both"), default="both")
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--size", type=int, default=28, help="input side (28: a 6x6 ODE state; 130: 32x32)")
  p.add_argument("--solver", choices=("dopri5", "midpoint", "euler"), default="dopri5")
  p.add_argument("--dt", type=float, default=0.1, help="step of the fixed-step solvers")
  p.add_argument("--tol", type=float, default=1e-3, help="rtol = atol of dopri5")
  p.add_argument("--adjoint", choices=tuple(TORCH_ADJOINT), default="recursive_checkpoint")
  p.add_argument("--checkpoints", type=int, default=None,
                 help="jaxvision: checkpoints of recursive_checkpoint (default: diffrax's)")
  p.add_argument("--conv-impl", choices=("xla", "patches"), default=None,
                 help="jaxvision: how f's convolutions run (default: patches on the CPU)")
  p.add_argument("--lr", type=float, default=0.1)
  p.add_argument("--steps", type=int, default=10, help="timed steps after the first one")
  return p


def setting(args) -> str:
  return (f"odenet_mnist batch={args.batch} size={args.size} solver={args.solver} "
          + (f"tol={args.tol:g}" if args.solver == "dopri5" else f"dt={args.dt:g}")
          + f" adjoint={args.adjoint}"
          + (f" checkpoints={args.checkpoints}" if args.checkpoints else "")
          + (f" conv_impl={args.conv_impl}" if args.conv_impl else ""))


def measure(args) -> list[dict]:
  """Both frameworks' (or `args.only`'s) step on the same weights and batch: a dict each with
  framework, device, first_s, median_s, nfe_fwd, nfe_bwd."""
  model = jax_model(args)
  params = jax.jit(lambda r: model.init(r, jnp.zeros((1, args.size, args.size, 1)), train=False))(
      jax.random.key(0))["params"]
  params = jax.tree.map(np.asarray, params)
  batch = synthetic_batch(args.batch, args.size)
  results = []
  if args.only in ("jax", "both"):
    results.append(bench_jax(args, params, batch))
  if args.only in ("torch", "both"):
    results.append(bench_torch(args, params, batch))
  alternate(results, args.steps)
  for r in results:
    if "nfe" in r:  # torch counts during its first step
      r["nfe_fwd"], r["nfe_bwd"] = float(r["nfe"]["fwd"]), float(r["nfe"]["bwd"])
  return results


def main():
  args = parser().parse_args()
  results = measure(args)
  for r in results:
    print(f"{setting(args)} | {r['framework']} on {r['device']}: first step {r['first_s']:.2f}s, "
          f"step median {1e3 * r['median_s']:.1f} ms, NFE fwd {r['nfe_fwd']:.0f} / bwd "
          f"{r['nfe_bwd']:.0f}")
  print(f"load average (1, 5, 15 min): {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
  if len(results) == 2:
    print(f"speed-up of jaxvision over torchdiffeq (median step): "
          f"{results[1]['median_s'] / results[0]['median_s']:.2f}x")


if __name__ == "__main__":
  main()
