"""The accelerator suite runs end to end in its --smoke mode on the CPU, so it never rots
before a GPU is lent (bench/gpu_suite.py; torch's columns read n/a where torch is absent); the
CPU benches compare what they claim to compare."""

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


def test_scan_backward_compares_the_same_function(capsys):
  import jax
  import numpy as np

  from bench import scan_backward

  rs = np.random.RandomState(0)
  kernels, x = rs.randn(3, 3, 3, 4, 4).astype(np.float32), rs.randn(2, 8, 8, 4).astype(np.float32)
  np.testing.assert_allclose(scan_backward.scanned(kernels, x), scan_backward.unrolled(kernels, x),
                             rtol=1e-5)
  np.testing.assert_allclose(jax.grad(scan_backward.scanned)(kernels, x),
                             jax.grad(scan_backward.unrolled)(kernels, x), rtol=1e-4, atol=1e-4)
  scan_backward.main(["--layers", "2", "--channels", "4", "--size", "8", "--batch", "2",
                      "--repeats", "1"])
  out = capsys.readouterr().out
  assert "| forward |" in out and "| kernel gradient |" in out
