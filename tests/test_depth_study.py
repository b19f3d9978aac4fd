"""The ODE-vs-ResNet depth study: the sweep, the distance to the ODE, the outputs, and (slow) a
mini sweep end to end on the offline digits data."""

import csv
import subprocess
import sys

import jax
import pytest

from jaxvision.analysis import depth_study
from jaxvision.models import create_model
from jaxvision.nn.ode import ODEOptions
from jaxvision.training.config import check_config
from jaxvision.configs.depth_study import get_config


def test_the_sweep_covers_depths_sharing_and_ode_solvers():
  config = get_config()
  runs = depth_study.sweep(config)
  names = [r["name"] for r in runs]
  assert len(names) == len(set(names)) == 7 * 2 + 3
  residual = [r for r in runs if r["middle"] == "residual"]
  assert sorted({r["N"] for r in residual}) == [1, 2, 4, 8, 16, 32, 64]
  assert all(r["h"] == 1.0 / r["N"] for r in residual)
  assert {r["shared"] for r in residual} == {True, False}
  odes = {r["name"]: r for r in runs if r["middle"] == "ode"}
  assert odes["ode_dopri5"]["h"] is None and odes["ode_rk4_dt025"]["h"] == 0.25
  assert odes["ode_dopri5_backsolve"]["solver"] == "dopri5/backsolve"
  for run in runs:  # every run's config is a valid training config with a buildable model
    cfg = depth_study.run_config(config, run)
    check_config(cfg)
    create_model(cfg.model.name, num_classes=10, axis_name=None, **cfg.model.options)
  # The runs share everything but the middle.
  first = depth_study.run_config(config, runs[0]).to_dict()
  last = depth_study.run_config(config, runs[-1]).to_dict()
  first["model"]["options"], last["model"]["options"] = {}, {}
  assert first == last


def test_dataset_switch_and_bad_dataset():
  assert get_config("mnist").train.model.options.downsampling == 2  # Chen et al.'s 6x6 state
  assert get_config("cifar10").train.dataset.name == "cifar10"
  with pytest.raises(ValueError, match="dataset: expected one of .* got 'svhn'"):
    get_config("svhn")


def test_distance_of_a_shared_stage_to_the_ode_shrinks_at_first_order():
  images = jax.random.normal(jax.random.key(0), (4, 6, 6, 1))
  distances = {}
  for n in (8, 16):
    model = create_model("odenet", num_classes=3, width=4, downsampling=0, groups=2,
                         middle="residual", num_blocks=n, scan_unroll=1)
    params = model.init(jax.random.key(1), images[:1], train=False)["params"]
    trained_like = jax.tree.map(lambda a: 1.5 * a, params)
    distances[n] = depth_study.distances_to_ode(model, [params, trained_like], images,
                                                ODEOptions(rtol=1e-7, atol=1e-7))
  for i in range(2):  # initial and scaled weights
    assert 1.8 < distances[8][i] / distances[16][i] < 2.2, distances


ROWS = [
    dict(name="residual_N01_shared", middle="residual", N=1, shared=True, solver="euler", h=1.0,
         params=100, test_accuracy=0.9, best_accuracy=0.91, epoch_s=0.1, fit_s=5.0, nfe_fwd=1,
         nfe_bwd=1, peak_mb=2.0, temp_mb=1.5, distance=0.4, distance_init=0.8, error=""),
    dict(name="residual_N02_shared", middle="residual", N=2, shared=True, solver="euler", h=0.5,
         params=100, test_accuracy=0.92, best_accuracy=0.92, epoch_s=0.2, fit_s=6.0, nfe_fwd=2,
         nfe_bwd=2, peak_mb=3.0, temp_mb=2.5, distance=0.2, distance_init=0.4, error=""),
    dict(name="residual_N02_unshared", middle="residual", N=2, shared=False, solver="euler",
         h=0.5, params=150, test_accuracy=0.93, best_accuracy=0.93, epoch_s=0.2, fit_s=6.0,
         nfe_fwd=2, nfe_bwd=2, peak_mb=3.1, temp_mb=2.6, error=""),
    dict(name="ode_dopri5", middle="ode", N=None, shared=True, solver="dopri5", h=None,
         params=100, test_accuracy=0.94, best_accuracy=0.95, epoch_s=1.0, fit_s=30.0,
         nfe_fwd=26.5, nfe_bwd=26.5, peak_mb=5.0, temp_mb=4.0, error=""),
    dict(name="ode_rk4", middle="ode", N=None, shared=True, solver="rk4", h=0.25, error="boom"),
]


def is_png(path):
  return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_results_csv_table_and_plots(tmp_path):
  depth_study.write_csv(ROWS, tmp_path / "results.csv")
  with (tmp_path / "results.csv").open() as f:
    read = list(csv.DictReader(f))
  assert [r["name"] for r in read] == [r["name"] for r in ROWS]
  assert tuple(read[0]) == depth_study.COLUMNS
  assert read[0]["distance"] == "0.4" and read[3]["N"] == "" and read[4]["error"] == "boom"
  table = depth_study.markdown_table(ROWS)
  assert table.splitlines()[0].startswith("| name | middle | N | shared |")
  assert "| residual_N02_shared | residual | 2 | True | euler | 0.5 | 100 | 92.00% |" in table
  assert len(table.splitlines()) == 2 + len(ROWS)
  depth_study.plot_study(ROWS, tmp_path)
  for name in ("depth_study", "accuracy", "memory", "distance"):
    assert is_png(tmp_path / f"{name}.png"), name


def test_the_study_imports_without_tensorflow():
  code = ("import sys, jaxvision.analysis.depth_study; "
          "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
  subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.slow
def test_mini_sweep_end_to_end(tmp_path, digits_dir):
  config = get_config()
  config.depths = (1, 2)
  config.share_weights = (True,)
  config.odes = {"rk4": dict(solver="rk4", controller="constant", dt=0.5)}
  config.timed_steps = 2
  config.distance_examples = 64
  config.train.dataset.data_dir = str(digits_dir)
  config.train.num_train_steps = 30
  config.train.eval_batch_size = 120
  rows = depth_study.run_study(config, tmp_path, progress=False)
  assert [r["name"] for r in rows] == ["residual_N01_shared", "residual_N02_shared", "ode_rk4"]
  assert not any(r["error"] for r in rows), rows
  assert len({r["params"] for r in rows}) == 1  # one shared f: the same parameters
  assert all(0.1 < r["test_accuracy"] <= 1.0 and r["peak_mb"] > 0 and r["epoch_s"] > 0
             for r in rows)
  assert rows[2]["nfe_fwd"] == rows[2]["nfe_bwd"] == 8  # rk4, 2 steps
  assert rows[1]["distance_init"] < rows[0]["distance_init"]
  assert rows[1]["peak_mb"] > rows[0]["peak_mb"]
  for name in ("results.csv", "results.md"):
    assert (tmp_path / name).exists()
  results = (tmp_path / "results.md").read_text()
  assert "| residual_N02_shared |" in results
  for word in ("jax ", "flax ", "git ", '"depths": [', '"num_train_steps": 30'):  # provenance
    assert word in results, word
  for name in ("depth_study", "accuracy", "memory", "distance"):
    assert is_png(tmp_path / f"{name}.png")
  # A second run of the same study reuses the finished runs.
  again = depth_study.run_study(config, tmp_path, progress=False)
  assert again == rows
