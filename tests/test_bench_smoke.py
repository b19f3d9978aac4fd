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


def test_seeds_vmap_steps_every_seed_as_its_own_step():
  """bench/seeds_vmap.py: the vmapped program advances each seed's state as that seed's own
  train step does (the two ways it times compute the same thing)."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  sys.path.insert(0, str(REPO))
  from bench import seeds_vmap

  one, together, states, batches, keys = seeds_vmap.build("digits_full", "residual_N02_unshared", 2)
  stacked, stacked_batch = seeds_vmap.stack_seeds(states), seeds_vmap.stack_seeds(batches)
  states = [jax.tree.map(jnp.copy, s) for s in states]
  after, metrics = together(stacked, stacked_batch, keys)
  for i, (s, b, k) in enumerate(zip(states, batches, keys)):
    alone, m = one(s, b, k)
    for a, v in zip(jax.tree.leaves(alone.params), jax.tree.leaves(after.params)):
      np.testing.assert_allclose(a, v[i], rtol=2e-4, atol=2e-6)
    np.testing.assert_allclose(m["loss"], metrics["loss"][i], rtol=1e-5)
  # The seeds start apart (their own initialisation), so the comparison is not of one state.
  assert not all(np.allclose(v[0], v[1]) for v in jax.tree.leaves(after.params))
