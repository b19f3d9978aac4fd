"""The ODE-vs-ResNet depth study: the sweep, the distance to the ODE, the outputs, and (slow) a
mini sweep end to end on the offline digits data."""

import csv
import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.analysis import depth_study
from jaxvision.models import create_model
from jaxvision.nn.ode import ODEOptions
from jaxvision.training.config import check_config
from jaxvision.configs.depth_study import get_config


def test_the_sweep_covers_depths_sharing_and_ode_solvers():
  config = get_config("digits_full")
  assert config.seeds == (0, 1, 2)
  runs = depth_study.sweep(config)
  names = [r["name"] for r in runs]
  # odenet: 7 depths x shared/unshared and 3 ODE solvers; the lecture's BatchNorm ResNet stage:
  # 7 depths x shared/unshared and its ode_resnet limit.
  assert len(names) == len(set(names)) == 7 * 2 + 3 + 7 * 2 + 1
  residual = [r for r in runs if r["middle"] == "residual"]
  assert sorted({r["N"] for r in residual}) == [1, 2, 4, 8, 16, 32, 64]
  assert all(r["h"] == 1.0 / r["N"] for r in residual)
  assert {r["shared"] for r in residual} == {True, False}
  odes = {r["name"]: r for r in runs if r["middle"] == "ode"}
  assert odes["ode_dopri5"]["h"] is None and odes["ode_rk4_dt025"]["h"] == 0.25
  assert odes["ode_dopri5_backsolve"]["solver"] == "dopri5/backsolve"
  for run in runs:  # every run's config is a valid training config with a buildable model
    cfg = depth_study.run_config(config, run, seed=2)
    assert cfg.seed == 2
    check_config(cfg)
    create_model(cfg.model.name, num_classes=10, axis_name=None, **cfg.model.options)
  # The runs share everything but the model.
  first = depth_study.run_config(config, runs[0]).to_dict()
  last = depth_study.run_config(config, runs[-1]).to_dict()
  first["model"], last["model"] = {}, {}
  assert first == last


def test_the_lecture_arms_a_batchnorm_resnet_stage_and_its_ode_limit():
  config = get_config("digits_full")
  runs = {r["name"]: r for r in depth_study.sweep(config)}
  images = jnp.zeros((2, 8, 8, 1))

  def build(name):
    cfg = depth_study.run_config(config, runs[name], seed=0)
    model = create_model(cfg.model.name, num_classes=10, axis_name=None, **cfg.model.options)
    return cfg, model, model.init(jax.random.key(0), images, train=False)

  cfg, _, unshared = build("bnresnet_N04_unshared")
  assert cfg.model.name == "resnet" and cfg.model.options.step_size == 0.25
  assert runs["bnresnet_N04_unshared"]["h"] == 0.25 and runs["bnresnet_N04_unshared"]["N"] == 4
  stage = unshared["params"][runs["bnresnet_N04_unshared"]["stage"]]
  assert {a.shape[0] for a in jax.tree.leaves(stage)} == {4}  # theta_j stacked over the blocks
  smooth = depth_study.depth_smoothness(stage, 4)  # independent initial convolutions
  assert 0.3 < smooth["mean"] <= smooth["max"] < 3
  _, _, shared = build("bnresnet_N04_shared")
  _, ode_model, ode = build("ode_resnet_rk4_dt025")
  assert ode_model.stage_sizes == (1,) and ode_model.widths == (16,) and ode_model.t1 == 1.0
  count = lambda v: sum(a.size for a in jax.tree.leaves(v["params"]))
  # One theta: the shared stage has one block's parameters (batch statistics per block), as
  # many as the ODE block's f (GroupNorm in place of BatchNorm); the unshared stage has 4.
  assert count(shared) == count(build("bnresnet_N01_shared")[2]) == count(ode)
  assert count(unshared) - count(shared) == 3 * (count(shared) - 16 * 9 - 2 * 16 - 16 * 10 - 10)


def test_dataset_switch_and_bad_dataset():
  assert get_config("mnist").train.model.options.downsampling == 2  # Chen et al.'s 6x6 state
  assert get_config("cifar10").train.dataset.name == "cifar10"
  assert get_config("mnist").seeds == get_config("cifar10").seeds == (0, 1, 2)
  with pytest.raises(ValueError, match="dataset: expected one of .* got 'svhn'"):
    get_config("svhn")


def test_the_demo_preset_is_a_cut_of_the_full_digits_sweep():
  demo, full = get_config(), get_config("digits_full")
  assert set(demo.depths) < set(full.depths) and set(demo.odes) < set(full.odes)
  assert len(demo.seeds) == 2 and len(depth_study.sweep(demo)) == 3 * 2 + 1
  assert demo.train.to_dict() == full.train.to_dict()  # the same runs, fewer of them
  for bad in ((), (0, 0), (0.5,), (True,)):
    demo.seeds = bad
    with pytest.raises(ValueError, match="config.seeds: expected distinct ints"):
      depth_study.seeds_of(demo)


def test_depth_smoothness_on_hand_made_weights():
  # Two leaves, stacked over 3 blocks: theta_0 = (3, 4, 0), theta_1 = (3, 4, 0),
  # theta_2 = (3, 0, 0): steps 0 and 4/5 of ||theta_j|| = 5.
  stage = {"a": {"w": np.array([[3.0, 4.0], [3.0, 4.0], [3.0, 0.0]])},
           "b": np.zeros((3, 1, 1))}
  got = depth_study.depth_smoothness(stage, 3)
  assert got["mean"] == pytest.approx(0.4) and got["max"] == pytest.approx(0.8)
  # The norm is relative to theta_j (not theta_{j+1}): (3, 0) -> (3, 4) steps by 4/3.
  flipped = {"a": {"w": stage["a"]["w"][::-1]}, "b": stage["b"]}
  assert depth_study.depth_smoothness(flipped, 3)["max"] == pytest.approx(4 / 3)
  # Samples of a smooth theta(t) at t_j = j/N: steps O(1/N); independent weights: O(1).
  smooth = lambda n: {"w": 2.0 + np.sin(np.arange(n) / n)[:, None] * np.ones((1, 5))}
  rand = lambda n: {"w": np.random.default_rng(n).normal(size=(n, 50))}
  ratio = lambda f: (depth_study.depth_smoothness(f(8), 8)["mean"]
                     / depth_study.depth_smoothness(f(32), 32)["mean"])
  assert 3.5 < ratio(smooth) < 4.5 and 0.8 < ratio(rand) < 1.25
  assert math.isnan(depth_study.depth_smoothness({"w": np.ones((1, 3))}, 1)["mean"])
  with pytest.raises(ValueError, match=r"stacked over 4 blocks .*\[\(3, 2\), \(3, 1, 1\)\]"):
    depth_study.depth_smoothness(stage, 4)


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


def _row(name, middle, n, shared, solver, h, seed, **measured):
  return dict(name=name, middle=middle, N=n, shared=shared, solver=solver, h=h, seed=seed,
              error="", **measured)


ROWS = [
    *(_row("residual_N01_shared", "residual", 1, True, "euler", 1.0, seed, params=100,
           test_accuracy=acc, best_accuracy=0.95, epoch_s=0.1, fit_s=5.0, nfe_fwd=1, nfe_bwd=1,
           peak_mb=2.0, temp_mb=1.5, distance=0.4, distance_init=0.8)
      for seed, acc in ((0, 0.9), (1, 0.92), (2, 0.94))),
    *(_row("residual_N02_shared", "residual", 2, True, "euler", 0.5, seed, params=100,
           test_accuracy=0.92, best_accuracy=0.92, epoch_s=0.2, fit_s=6.0, nfe_fwd=2,
           nfe_bwd=2, peak_mb=3.0, temp_mb=2.5, distance=d, distance_init=0.4)
      for seed, d in ((0, 0.2), (1, 0.1), (2, 0.3))),
    *(_row("residual_N02_unshared", "residual", 2, False, "euler", 0.5, seed, params=150,
           test_accuracy=0.93, best_accuracy=0.93, epoch_s=0.2, fit_s=6.0, nfe_fwd=2,
           nfe_bwd=2, peak_mb=3.1, temp_mb=2.6, dtheta_mean=m, dtheta_max=2 * m,
           dtheta_init=1.4) for seed, m in ((0, 0.5), (1, 0.7), (2, 0.6))),
    *(_row("residual_N04_unshared", "residual", 4, False, "euler", 0.25, seed, params=250,
           test_accuracy=0.93, best_accuracy=0.93, epoch_s=0.4, fit_s=7.0, nfe_fwd=4,
           nfe_bwd=4, peak_mb=4.1, temp_mb=3.6, dtheta_mean=m, dtheta_max=2 * m,
           dtheta_init=1.4) for seed, m in ((0, 0.25), (1, 0.35), (2, 0.3))),
    *(_row("ode_dopri5", "ode", None, True, "dopri5", None, seed, params=100,
           test_accuracy=0.94, best_accuracy=0.95, epoch_s=1.0, fit_s=30.0, nfe_fwd=nfe,
           nfe_bwd=nfe, peak_mb=5.0, temp_mb=4.0) for seed, nfe in ((0, 26.5), (1, 32.0))),
    {**_row("ode_dopri5", "ode", None, True, "dopri5", None, 2), "error": "boom"},
    {**_row("ode_rk4", "ode", None, True, "rk4", 0.25, 0), "error": "bad"},
]


def test_summary_over_seeds_mean_std_and_t_interval():
  summary = {s["name"]: s for s in depth_study.summarize(ROWS)}
  assert list(summary) == ["residual_N01_shared", "residual_N02_shared", "residual_N02_unshared",
                           "residual_N04_unshared", "ode_dopri5", "ode_rk4"]
  acc = summary["residual_N01_shared"]["test_accuracy"]
  half = 4.302653 * 0.02 / math.sqrt(3)  # t_{0.975, 2 dof} * std / sqrt(n)
  assert acc["n"] == 3 and acc["mean"] == pytest.approx(0.92)
  assert acc["std"] == pytest.approx(0.02)  # sample std (n - 1)
  assert (acc["lo"], acc["hi"]) == pytest.approx((0.92 - half, 0.92 + half), abs=1e-6)
  assert (acc["min"], acc["max"]) == pytest.approx((0.9, 0.94))
  ode = summary["ode_dopri5"]  # the failed seed is left out, and said
  assert ode["seeds"] == [0, 1] and ode["failed"] == {2: "boom"}
  assert ode["nfe_fwd"]["mean"] == pytest.approx(29.25) and ode["nfe_fwd"]["n"] == 2
  half2 = 12.706205 * math.sqrt(((26.5 - 29.25) ** 2 + (32 - 29.25) ** 2)) / math.sqrt(2)
  assert ode["nfe_fwd"]["hi"] == pytest.approx(29.25 + half2, rel=1e-6)
  assert summary["ode_rk4"]["seeds"] == [] and summary["ode_rk4"]["test_accuracy"]["n"] == 0
  assert summary["residual_N02_unshared"]["dtheta_mean"]["mean"] == pytest.approx(0.6)
  assert summary["residual_N02_shared"]["dtheta_mean"]["n"] == 0


def test_results_csv_table_and_plots(tmp_path):
  depth_study.write_csv(ROWS, tmp_path / "results.csv")
  with (tmp_path / "results.csv").open() as f:
    read = list(csv.DictReader(f))
  assert [(r["name"], r["seed"]) for r in read] == [(r["name"], str(r["seed"])) for r in ROWS]
  assert tuple(read[0]) == depth_study.COLUMNS
  assert read[0]["distance"] == "0.4" and read[12]["N"] == "" and read[14]["error"] == "boom"
  assert read[6]["dtheta_mean"] == "0.5" and read[0]["dtheta_mean"] == ""
  table = depth_study.markdown_table(ROWS)
  lines = table.splitlines()
  assert lines[0].startswith("| name | middle | N | shared | solver | h | params | seeds | "
                             "test_accuracy (%) |")
  assert len(lines) == 2 + 6  # one line per run
  # mean +- std [95% interval]; a single value where the seeds agree.
  assert "| residual_N01_shared | residual | 1 | True | euler | 1 | 100 | 3/3 | 92.00 +- 2.00 " \
         "[87.03, 96.97] | 95.00 |" in table
  assert "| 2.00e-01 +- 1.00e-01 [-4.84e-02, 4.48e-01] |" in table
  assert "| ode_dopri5 | ode |  | True | dopri5 |  | 100 | 2/3 |" in table
  assert lines[-1].startswith("| ode_rk4 |") and lines[-1].endswith("| seed 0: bad |")
  summary = depth_study.summarize(ROWS)
  depth_study.write_summary_csv(summary, tmp_path / "summary.csv")
  with (tmp_path / "summary.csv").open() as f:
    read = list(csv.DictReader(f))
  assert read[0]["n_seeds"] == "3" and float(read[0]["test_accuracy_std"]) == pytest.approx(0.02)
  assert read[4]["failed"] == "1" and read[5]["test_accuracy_mean"] == ""
  depth_study.plot_study(summary, tmp_path)
  for name in ("depth_study", "accuracy", "memory", "distance", "smoothness"):
    assert is_png(tmp_path / f"{name}.png"), name


def is_png(path):
  return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


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
  config.seeds = (0, 1)
  config.timed_steps = 2
  config.distance_examples = 64
  config.train.dataset.data_dir = str(digits_dir)
  config.train.num_train_steps = 30
  config.train.eval_batch_size = 120
  rows = depth_study.run_study(config, tmp_path, progress=False)
  assert [(r["name"], r["seed"]) for r in rows] == [
      (name, seed) for name in ("residual_N01_shared", "residual_N02_shared", "ode_rk4")
      for seed in (0, 1)]
  assert not any(r["error"] for r in rows), rows
  assert len({r["params"] for r in rows}) == 1  # one shared f: the same parameters
  assert all(0.1 < r["test_accuracy"] <= 1.0 and r["peak_mb"] > 0 and r["epoch_s"] > 0
             for r in rows)
  assert all(r["nfe_fwd"] == r["nfe_bwd"] == 8 for r in rows[4:])  # rk4, 2 steps
  by = {(r["name"], r["seed"]): r for r in rows}
  for seed in (0, 1):
    assert by["residual_N02_shared", seed]["distance_init"] < by[
        "residual_N01_shared", seed]["distance_init"]
    assert (tmp_path / "runs" / "residual_N02_shared" / f"seed{seed}" / "result.json").exists()
  # The seeds draw other initial weights.
  first = by["residual_N01_shared", 0]["distance_init"]
  assert first != by["residual_N01_shared", 1]["distance_init"]
  assert rows[2]["peak_mb"] > rows[0]["peak_mb"]
  for name in ("results.csv", "results.md", "summary.csv"):
    assert (tmp_path / name).exists()
  results = (tmp_path / "results.md").read_text()
  assert "| residual_N02_shared | residual | 2 | True | euler | 0.5 |" in results
  assert "| 2/2 |" in results and " +- " in results and "seeds [0, 1]" in results
  for word in ("jax ", "flax ", "git ", '"depths": [', '"num_train_steps": 30', '"seeds": ['):
    assert word in results, word  # provenance
  for name in ("depth_study", "accuracy", "memory", "distance", "smoothness"):
    assert is_png(tmp_path / f"{name}.png")
  # A second run of the same study reuses the finished runs.
  again = depth_study.run_study(config, tmp_path, progress=False)
  assert again == rows


@pytest.mark.slow
def test_unshared_stages_report_their_smoothness_and_the_lecture_arms_train(tmp_path, digits_dir):
  config = get_config()
  config.depths = (4,)
  config.share_weights = (False,)
  config.odes = {}
  config.bn_depths = (2,)
  config.ode_resnets = {"euler": dict(solver="euler", controller="constant", dt=0.5)}
  config.seeds = (3,)
  config.timed_steps = 1
  config.distance_examples = 32
  config.train.dataset.data_dir = str(digits_dir)
  config.train.num_train_steps = 5
  config.train.eval_batch_size = 120
  rows = depth_study.run_study(config, tmp_path, progress=False)
  assert [r["name"] for r in rows] == ["residual_N04_unshared", "bnresnet_N02_unshared",
                                       "ode_resnet_euler"]
  assert all(r["seed"] == 3 and not r["error"] for r in rows), rows
  # Independent initial blocks differ by about their own norm; 5 small steps keep them so.
  for row in rows[:2]:
    assert "distance" not in row
    assert 0.3 < row["dtheta_init"] < 3 and 0.3 < row["dtheta_mean"] <= row["dtheta_max"] < 3
  assert rows[1]["nfe_fwd"] == 2 and rows[2]["nfe_fwd"] == rows[2]["nfe_bwd"] == 2  # 2 Euler steps
  assert "dtheta_mean" not in rows[2]
  assert (tmp_path / "smoothness.png").exists()
