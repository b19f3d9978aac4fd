"""Benchmark: compile time of the training step, scanned stages against unrolled blocks, by depth.

  python bench/compile_time.py                               # ResNet-50/101/152, CIFAR ResNet-1202
  python bench/compile_time.py --models resnet50 --modes scan unrolled --batch 8

For each model and stage layout, a fresh process lowers the jitted train step (tracing to
StableHLO, "lowering") and compiles it with XLA ("XLA"), on abstract parameters (nothing runs),
and reports both times. Layouts:

  scan           a stage's identical blocks are one `nn.scan` whose loop stays rolled
                 (`scan_unroll=1`): the body is compiled once, whatever the depth. The GPU/TPU
                 default; on the CPU the default unrolls the loop (XLA:CPU runs a convolution's
                 backward pass inside a loop 10-40x slower), hence `scan_unroll=1` here.
  scan_unrolled  the same scan with its compiled loop unrolled (`scan_unroll` = all blocks,
                 the CPU default).
  unrolled       the blocks unrolled in Python (`scan=False`).

Each measurement is one process (no tracing or compilation cache is shared), run one after the
other, with the load average printed; `--timeout` bounds each.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.cli import load  # noqa: E402

MODES = {"scan": {"scan_unroll": 1}, "scan_unrolled": {"scan_unroll": 10_000},
         "unrolled": {"scan": False}}
CIFAR = ("cifar_resnet",)


def measure(model: str, mode: str, batch: int, size: int) -> dict:
  """Lowering and XLA compile seconds of `model`'s train step in this process."""
  from bench.train_step import TrainStep
  import jax

  cifar = model.startswith(CIFAR)
  ts = TrainStep(model, batch, 32 if cifar else size, num_classes=10 if cifar else 1000,
                 **MODES[mode])
  c = ts.compile()
  blocks = sum(ts.model.stage_sizes)
  return {"model": model, "mode": mode, "blocks": blocks, "lower_s": c["lower_s"],
          "xla_compile_s": c["xla_compile_s"], "device": jax.devices()[0].device_kind}


def run_one(model: str, mode: str, batch: int, size: int, timeout: float, memory_gb: float) -> dict:
  """`measure` in a fresh process, bounded in time and in (virtual) memory: XLA compiling
  thousands of unrolled layers can take tens of GB, on a machine shared with others."""
  cmd = [sys.executable, os.path.abspath(__file__), "--one", model, mode, "--batch", str(batch),
         "--size", str(size)]
  limit = int(memory_gb * 2**30)
  cap = lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
  try:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=cap)
  except subprocess.TimeoutExpired:
    return {"model": model, "mode": mode, "error": f"not done in {timeout:.0f} s"}
  if out.returncode:
    lines = [l for l in out.stderr.splitlines() if l.strip() and not set(l.strip()) <= {"*"}]
    memory = any("alloc" in l.lower() or "memory" in l.lower() for l in lines[-20:])
    reason = (f"out of memory (over {memory_gb:g} GB)" if memory or out.returncode < 0
              else (lines[-1] if lines else f"exit code {out.returncode}"))
    return {"model": model, "mode": mode, "error": reason}
  return json.loads(out.stdout.strip().splitlines()[-1])


def row(r: dict) -> str:
  if "error" in r:
    return f"| {r['model']} | {r['mode']} | | {r['error']} | | | {r.get('load', '')} |"
  total = r["lower_s"] + r["xla_compile_s"]
  return (f"| {r['model']} | {r['mode']} | {r['blocks']} | {r['lower_s']:.1f} s | "
          f"{r['xla_compile_s']:.1f} s | {total:.1f} s | {r['load']} |")


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--models", nargs="+",
                 default=["resnet50", "resnet101", "resnet152", "cifar_resnet1202"])
  p.add_argument("--modes", nargs="+", choices=sorted(MODES), default=["scan", "unrolled"])
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--size", type=int, default=64, help="ImageNet models' input size (CIFAR: 32)")
  p.add_argument("--timeout", type=float, default=1200, help="seconds per measurement")
  p.add_argument("--memory-gb", type=float, default=12,
                 help="address-space limit per measurement (GB)")
  p.add_argument("--one", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)
  a = p.parse_args()
  if a.one:
    print(json.dumps(measure(*a.one, a.batch, a.size)))
    return
  print(f"train step compile time, batch {a.batch}, {a.size}x{a.size} (CIFAR 32x32), "
        f"SGD momentum ({load()})")
  print("| model | stages | blocks | lowering | XLA compile | total | load |")
  print("|---|---|---|---|---|---|---|")
  for model in a.models:
    for mode in a.modes:
      r = run_one(model, mode, a.batch, a.size, a.timeout, a.memory_gb)
      r["load"] = load()
      print(row(r), flush=True)


if __name__ == "__main__":
  main()
