"""A seeded study (arms x seeds through fit): rows, intervals, the results file and the curves."""

import json

import ml_collections
import numpy as np
import pytest

from jaxvision.analysis import seeded_study
from jaxvision.configs import plain_vs_residual, stochastic_depth
from jaxvision.training.config import default_config

TINY = dict(stage_sizes=(1,), widths=(4,), stem="cifar", stem_width=4)


def test_interval_is_students_t_over_the_seeds():
  got = seeded_study.interval([0.1, 0.2, 0.3])
  half = 4.302652729911275 * 0.1 / np.sqrt(3)  # t(0.975, 2 dof) * std / sqrt(n)
  assert got["n"] == 3 and got["mean"] == pytest.approx(0.2) and got["std"] == pytest.approx(0.1)
  assert (got["lo"], got["hi"]) == pytest.approx((0.2 - half, 0.2 + half))
  assert np.isnan(seeded_study.interval([0.5])["std"])


def test_study_configs_pair_plain_with_residual_and_sd_with_none():
  arms = plain_vs_residual.get_config().arms
  assert {a: (arms[a]["name"], dict(arms[a]["options"]).get("shortcut")) for a in arms} == {
      "plain20": ("cifar_resnet20", "none"), "resnet20": ("cifar_resnet20", None),
      "plain56": ("cifar_resnet56", "none"), "resnet56": ("cifar_resnet56", None)}
  sd = stochastic_depth.get_config()
  assert [dict(a["options"]).get("stochastic_depth", False) for a in sd.arms.values()] == [False, True]
  assert list(sd.seeds) == [0, 1, 2] and sd.train.dataset.name == "clutter10"
  assert ("plain56", "plain20") in plain_vs_residual.get_config().comparisons  # degradation
  assert list(sd.comparisons) == [("resnet56_stochastic_depth", "resnet56")]
  with pytest.raises(ValueError, match="dataset: expected one of .*got 'nope'"):
    plain_vs_residual.get_config("nope")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  c = ml_collections.ConfigDict()
  c.arms = ml_collections.ConfigDict({
      "plain": dict(name="resnet", options=dict(shortcut="none")),
      "residual": dict(name="resnet", options=dict())})
  c.seeds = (0, 1)
  c.comparisons = (("plain", "residual"),)
  t = default_config()
  t.model.name = "resnet"
  t.model.options.update(TINY)
  t.dataset.name = "digits"
  t.batch_size, t.eval_batch_size, t.num_train_steps = 32, 120, 6
  t.log_every_steps = t.eval_every_steps = t.checkpoint_every_steps = 3
  t.plot = False
  c.train = t
  workdir = tmp_path_factory.mktemp("study")
  return c, workdir, seeded_study.run_study(c, workdir, title="tiny", progress=False)


def test_every_arm_and_seed_is_a_fit_run_with_its_own_seed(study):
  config, workdir, rows = study
  assert [(r["arm"], r["seed"]) for r in rows] == [("plain", 0), ("plain", 1), ("residual", 0),
                                                    ("residual", 1)]
  for r in rows:
    summary = json.loads((workdir / "runs" / r["arm"] / f"seed{r['seed']}" / "summary.json").read_text())
    assert summary["steps"] == 6 and r["test_error"] == pytest.approx(1 - summary["eval_accuracy"])
    assert r["curves"]["test"][0] == [3, 6] and r["curves"]["train"][0] == [3, 6]
    assert r["epoch_s"] > 0
  # Seeds differ (initialisation and batches), and so do the arms' parameter counts (none here).
  assert rows[0]["curves"]["train"][1] != rows[1]["curves"]["train"][1]
  assert rows[0]["params"] == rows[2]["params"]


def test_results_name_the_intervals_versions_and_config(study):
  config, workdir, rows = study
  text = (workdir / "results.md").read_text()
  summary = seeded_study.summarize(rows)
  plain = summary[0]["test_error"]
  assert plain == seeded_study.interval([rows[0]["test_error"], rows[1]["test_error"]])
  assert f"| plain | {rows[0]['params']:,} | 2 | {100 * plain['mean']:.2f} +- " in text
  for word in ("jax ", "flax ", "git ", '"shortcut": "none"', "digits"):
    assert word in text, word
  assert (workdir / "curves.png").stat().st_size > 10_000
  saved = json.loads((workdir / "results.json").read_text())
  assert [s["arm"] for s in saved["summary"]] == ["plain", "residual"]


def test_paired_differences_pair_the_seeds_both_arms_ran():
  row = lambda arm, seed, test, train: dict(arm=arm, seed=seed, test_error=test, train_error=train)  # noqa: E731
  rows = [row("deep", 0, 0.30, 0.40), row("deep", 1, 0.20, 0.10), row("deep", 2, 0.25, 0.30),
          row("shallow", 0, 0.10, 0.20), row("shallow", 1, 0.15, 0.20)]  # shallow seed 2 missing
  (d,) = seeded_study.paired_differences(rows, [("deep", "shallow")])
  assert d["seeds"] == [0, 1]
  assert d["test_error"] == pytest.approx({**seeded_study.interval([0.20, 0.05]), "a_higher": 2})
  assert d["train_error"]["mean"] == pytest.approx(0.05) and d["train_error"]["a_higher"] == 1
  table = seeded_study.differences_table([d])
  assert "| deep - shallow | 2 | 12.50 [" in table and "| 2 of 2 |" in table
  assert table.count("not established (includes 0)") == 2  # two seeds: a wide t(1 dof) interval
  (sure,) = seeded_study.paired_differences(
      [row("a", s, 0.5 + 0.01 * s, 0.5) for s in range(3)]
      + [row("b", s, 0.1, 0.5 - 0.01 * s) for s in range(3)], [("a", "b")])
  assert seeded_study._verdict(sure["test_error"]) == "a > b"
  assert seeded_study._verdict(sure["train_error"]) == "not established (includes 0)"


def test_results_report_the_paired_differences(study):
  config, workdir, rows = study
  text = (workdir / "results.md").read_text()
  (d,) = json.loads((workdir / "results.json").read_text())["differences"]
  assert d["seeds"] == [0, 1] and d["test_error"]["mean"] == pytest.approx(
      (rows[0]["test_error"] - rows[2]["test_error"] + rows[1]["test_error"]
       - rows[3]["test_error"]) / 2)
  assert "Paired differences" in text and "| plain - residual | 2 | " in text


def test_a_comparison_of_an_unknown_arm_is_named(tmp_path):
  config = plain_vs_residual.get_config()
  config.comparisons = (("plain20", "resnet110"),)
  with pytest.raises(ValueError, match=r"comparisons: expected pairs of arms among \['plain20'.*"
                                       r"got \('plain20', 'resnet110'\)"):
    seeded_study.run_study(config, tmp_path, title="x", progress=False)
  assert not (tmp_path / "runs").exists()


def test_a_finished_run_is_reused_as_it_is_and_other_settings_are_refused(study, monkeypatch):
  config, workdir, rows = study
  before = {p: p.read_text() for p in (workdir / "runs").glob("*/*/summary.json")}

  def no_training(*args, **kwargs):
    raise AssertionError("a finished run was trained again")
  monkeypatch.setattr(seeded_study, "fit", no_training)
  assert seeded_study.run_study(config, workdir, title="tiny", progress=False) == rows
  assert {p: p.read_text() for p in before} == before  # its training time kept
  longer = seeded_study.run_config(config, "plain", 0)
  longer.num_train_steps = 9  # more steps: not finished, so fit resumes it
  assert seeded_study.finished_summary(longer, workdir / "runs" / "plain" / "seed0") is None
  other = seeded_study.run_config(config, "plain", 0)
  other.optimizer.learning_rate = 0.5
  with pytest.raises(ValueError, match="holds a checkpoint trained with other settings"):
    seeded_study.finished_summary(other, workdir / "runs" / "plain" / "seed0")


def test_an_unknown_arm_is_named():
  with pytest.raises(ValueError, match=r"arm: expected one of \['plain20', .*got 'x'"):
    seeded_study.run_config(plain_vs_residual.get_config(), "x", 0)


def test_finished_only_reports_the_runs_so_far_and_names_the_rest(study, tmp_path):
  import shutil
  config, workdir, rows = study
  shutil.copytree(workdir / "runs" / "plain", tmp_path / "runs" / "plain")
  shutil.rmtree(tmp_path / "runs" / "plain" / "seed1" / "checkpoints")  # as if cut mid-run
  (tmp_path / "runs" / "plain" / "seed1" / "summary.json").unlink()
  got = seeded_study.run_study(config, tmp_path, title="tiny", progress=False, finished_only=True)
  assert [(r["arm"], r["seed"]) for r in got] == [("plain", 0)]
  assert got[0]["test_error"] == pytest.approx(rows[0]["test_error"])  # reused, not retrained
  assert not (tmp_path / "runs" / "residual").exists()
  text = (tmp_path / "results.md").read_text()
  assert "Not run yet (reported with --finished_only): plain seed 1, residual seed 0, residual seed 1." in text
  with pytest.raises(ValueError, match="finished_only: no run in .* has finished yet"):
    seeded_study.run_study(config, tmp_path / "empty", title="tiny", progress=False,
                           finished_only=True)
