"""The accelerator suite runs end to end in its --smoke mode on the CPU, so it never rots
before a GPU is lent (bench/gpu_suite.py; torch's columns read n/a where torch is absent)."""

import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_gpu_suite_smoke_writes_its_tables(tmp_path):
  out = tmp_path / "suite.md"
  env = {**os.environ, "TFDS_DATA_DIR": str(tmp_path / "tfds")}
  proc = subprocess.run([sys.executable, "bench/gpu_suite.py", "--smoke", "--no-torch",
                         "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  text = out.read_text()
  rows = [line for line in text.splitlines() if line.startswith("| ")]
  resnet = next(r for r in rows if r.startswith("| resnet18 |")).split("|")
  assert float(resnet[2].replace(",", "")) > 0  # jaxvision img/s
  assert resnet[8].strip() == "n/a"  # torch left out
  fit = next(r for r in rows if r.startswith("| cifar_resnet20 |")).split("|")
  assert 0 < float(fit[5]) < 10  # fit / bare
  ode = [r for r in rows if r.startswith("| 6x6 |")]
  assert len(ode) == 2 and all(float(r.split("|")[4]) > 0 for r in ode)
