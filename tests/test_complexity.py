"""Complexity analysis: MACs and XLA FLOPs against published figures, memory, the CLI."""

import json

import jax
import jax.numpy as jnp
import pytest

from jaxvision.analysis import complexity
from jaxvision.models import create_model


def forward_macs(name, size=224, **options):
  model = create_model(name, num_classes=1000, **options)
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  return complexity.count_macs(lambda v, x: model.apply(v, x, train=False), v, x) / 1e9


# torchvision's published GMACs at 224x224 ("GFLOPS" in its docs), counted from the jaxpr.
@pytest.mark.parametrize("name", ["alexnet", "vgg16", "googlenet", "resnet18", "resnet50", "resnet152"])
def test_macs_agree_with_published_figures(name):
  assert forward_macs(name) == pytest.approx(complexity.PUBLISHED_GMACS[name], rel=0.05)


def test_scanned_stages_are_counted_once_per_block():
  assert forward_macs("resnet50", scan=True) == pytest.approx(forward_macs("resnet50", scan=False), rel=1e-9)


def test_macs_of_a_convolution_and_a_dense_layer_by_hand():
  f = lambda x, w, d: jax.lax.conv_general_dilated(
      x, w, (2, 2), [(1, 1), (1, 1)], dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=2).mean((1, 2)) @ d
  s = jax.ShapeDtypeStruct
  macs = complexity.count_macs(f, s((3, 8, 8, 4), jnp.float32), s((3, 3, 2, 6), jnp.float32),
                               s((6, 5), jnp.float32))
  assert macs == 3 * 4 * 4 * 6 * (3 * 3 * 2) + 3 * 6 * 5


# XLA counts 2 FLOPs per multiply-add, skips the taps on zero padding and adds elementwise work.
@pytest.mark.parametrize("name", ["resnet50", "vgg16"])
def test_xla_forward_flops_agree_with_twice_the_published_macs(name):
  flops = complexity.forward_cost(name, size=224)["forward_gflops"]
  assert flops == pytest.approx(2 * complexity.PUBLISHED_GMACS[name], rel=0.05)


@pytest.fixture(scope="module")
def tiny_row():
  return complexity.analyze("cifar_resnet20", size=16, batch=4, channels=1, num_classes=10,
                            timing="forward", repeats=1)


def test_training_step_costs_about_three_forward_passes_and_holds_the_state(tiny_row):
  r = tiny_row
  assert r["params"] == 269_722 - 2 * 9 * 16  # the 0.27M of He et al., with 1 input channel
  assert 2.5 < r["train_gflops_per_image"] / r["forward_gflops"] < 3.5
  assert r["train_peak_bytes"] > 3 * 4 * r["params"]  # params, gradients, momentum (float32)
  assert r["latency_ms"] > 0 and r["train_images_per_s"] is None  # forward timing only


def test_cli_writes_the_table_json_and_plot(tmp_path, tiny_row, capsys, monkeypatch):
  monkeypatch.setattr(complexity, "analyze", lambda name, **kw: dict(tiny_row, model=name))
  rows = complexity.main(["--models", "cifar_resnet20,cifar_resnet32", "--out", str(tmp_path),
                          "--accuracy", "cifar_resnet20=91.25"])
  out = capsys.readouterr().out
  assert "| cifar_resnet20 | 0.27 |" in out and "| cifar_resnet32 |" in out
  assert json.loads((tmp_path / "complexity.json").read_text())[1]["model"] == "cifar_resnet32"
  assert (tmp_path / "complexity.png").stat().st_size > 10_000
  assert len(rows) == 2


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="timing: expected one of"):
    complexity.analyze("resnet18", timing="fast")
  with pytest.raises(ValueError, match="batch: expected a positive int, got 0"):
    complexity.analyze("resnet18", batch=0)
  with pytest.raises(ValueError, match=r"--accuracy: expected 'torchvision' or NAME=TOP1"):
    complexity.parse_accuracy("resnet18:70")
  with pytest.raises(SystemExit):
    complexity.main(["--models", "resnet7"])
