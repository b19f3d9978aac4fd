"""torchvision weights: the resnet18 fixture's logits, layouts, round trips and error listing."""

import ast
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from jaxvision.convert import (ConversionError, convertible_models, from_torchvision,
                               read_state_dict, to_torchvision)
from jaxvision.models import create_model

from fixtures.seeded_state_dict import seeded_images, seeded_state_dict

FIXTURES = pathlib.Path(__file__).parents[2] / "shared" / "fixtures"
RESNET18 = FIXTURES / "torchvision_resnet18.safetensors"


@pytest.fixture(scope="module")
def fixture_io():
  assert RESNET18.exists(), f"missing fixture {RESNET18} (../shared beside the repository)"
  io = np.load(FIXTURES / "torchvision_resnet18_io.npz")
  return io["x_nchw"].transpose(0, 2, 3, 1), io["logits"]


@pytest.mark.parametrize("options", [{}, {"scan": False}])
def test_fixture_resnet18_reproduces_torchvisions_logits(fixture_io, options):
  x, logits = fixture_io
  variables = from_torchvision("resnet18", RESNET18, **options)
  model = create_model("resnet18", num_classes=10, **options)  # num_classes read from fc.weight
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  np.testing.assert_allclose(out, logits, atol=1e-4, rtol=0)


def test_fixture_layout_batch_stats_and_stacked_stages():
  state = load_file(str(RESNET18))
  v = from_torchvision("resnet18", RESNET18)
  f32 = lambda k: state[k].astype(np.float32)
  np.testing.assert_array_equal(v["batch_stats"]["bn1"]["mean"], f32("bn1.running_mean"))
  np.testing.assert_array_equal(v["params"]["bn1"]["scale"], f32("bn1.weight"))
  np.testing.assert_array_equal(v["params"]["conv1"]["kernel"], f32("conv1.weight").transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(v["params"]["fc"]["kernel"], f32("fc.weight").T)
  # layer1 has no transition block: torch blocks 0 and 1 are stacked on a leading axis.
  stacked = v["params"]["layer1"]["blocks"]["block"]["branch"]["conv2"]["kernel"]
  assert stacked.shape == (2, 3, 3, 64, 64)
  np.testing.assert_array_equal(stacked[1], f32("layer1.1.conv2.weight").transpose(2, 3, 1, 0))
  # layer2's block 0 (stride 2, downsample) is the transition; block 1 the one-block stage.
  t = v["params"]["layer2_transition"]
  np.testing.assert_array_equal(t["proj_conv"]["kernel"][0, 0], f32("layer2.0.downsample.0.weight")[:, :, 0, 0].T)
  np.testing.assert_array_equal(v["batch_stats"]["layer2_transition"]["proj_bn"]["var"],
                                f32("layer2.0.downsample.1.running_var"))
  np.testing.assert_array_equal(v["batch_stats"]["layer2"]["blocks"]["block"]["branch"]["bn2"]["var"][0],
                                f32("layer2.1.bn2.running_var"))


def test_round_trip_reproduces_the_state_dict_and_the_variables():
  state = load_file(str(RESNET18))
  v = from_torchvision("resnet18", RESNET18)
  back = to_torchvision("resnet18", v)
  assert set(back) == set(state)  # num_batches_tracked included
  for k, a in state.items():
    assert back[k].shape == a.shape and back[k].dtype == (np.int64 if a.dtype == np.int64 else np.float32)
    np.testing.assert_array_equal(back[k], a.astype(back[k].dtype) if "num_batches" not in k else 0)
  again = from_torchvision("resnet18", back)
  jax.tree.map(np.testing.assert_array_equal, again, v)


def test_missing_unexpected_and_misshaped_keys_are_listed_together():
  state = load_file(str(RESNET18))
  del state["layer3.1.bn2.running_mean"], state["fc.bias"]
  state["layer5.0.conv1.weight"] = np.zeros((1,), np.float32)
  state["layer1.0.conv1.weight"] = np.zeros((64, 64, 1, 1), np.float16)
  with pytest.raises(ConversionError) as e:
    from_torchvision("resnet18", state)
  msg = str(e.value)
  assert "2 missing key(s): ['fc.bias', 'layer3.1.bn2.running_mean']" in msg
  assert "1 unexpected key(s): ['layer5.0.conv1.weight']" in msg
  assert "layer1.0.conv1.weight: got (64, 64, 1, 1), expected (64, 64, 3, 3)" in msg


def test_a_checkpoint_of_another_architecture_is_refused():
  with pytest.raises(ConversionError, match=r"missing key\(s\).*layer1\.0\.conv3\.weight"):
    from_torchvision("resnet50", RESNET18)


def test_names_sources_and_options_without_a_torchvision_counterpart_are_errors(tmp_path):
  assert {"resnet18", "resnet152", "alexnet", "vgg16_bn", "googlenet"} <= set(convertible_models())
  assert "cifar_resnet20" not in convertible_models()
  with pytest.raises(ValueError, match=r"'cifar_resnet20' has no torchvision counterpart.*resnet18"):
    from_torchvision("cifar_resnet20", RESNET18)
  with pytest.raises(ValueError, match="share_weights=True has no torchvision counterpart"):
    from_torchvision("resnet18", RESNET18, share_weights=True)
  (tmp_path / "w.npz").write_bytes(b"")
  with pytest.raises(ValueError, match=r"expected a \.safetensors, \.pth or \.pt file"):
    read_state_dict(tmp_path / "w.npz")
  with pytest.raises(FileNotFoundError, match="no file"):
    read_state_dict(tmp_path / "missing.safetensors")
  with pytest.raises(TypeError, match="'fc.weight' is a list, expected an array"):
    read_state_dict({"fc.weight": [1.0]})


def zero_variables(name, **options):
  """Variables of the right shapes without initialising (np.zeros is lazy)."""
  model = create_model(name, **options)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False))
  return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


# Keys and shapes of torchvision's state_dicts (torchvision.models.*().state_dict()).
@pytest.mark.parametrize("name,options,count,samples", [
    ("alexnet", {}, 16, {"features.0.weight": (64, 3, 11, 11), "features.10.bias": (256,),
                         "classifier.1.weight": (4096, 9216), "classifier.6.weight": (1000, 4096)}),
    ("vgg16_bn", {}, 97, {"features.1.running_var": (64,), "features.40.weight": (512, 512, 3, 3),
                          "features.41.num_batches_tracked": (), "classifier.0.weight": (4096, 25088)}),
    ("vgg11", {}, 22, {"features.18.weight": (512, 512, 3, 3), "classifier.3.bias": (4096,)}),
    ("googlenet", {"aux_logits": True}, 364, {
        "conv1.conv.weight": (64, 3, 7, 7), "conv1.bn.num_batches_tracked": (),
        "inception3a.branch3.1.conv.weight": (32, 16, 3, 3),  # torchvision's 3x3 "5x5" branch
        "inception5b.branch4.1.bn.running_mean": (128,), "aux1.conv.conv.weight": (128, 512, 1, 1),
        "aux2.fc1.weight": (1024, 2048), "aux2.fc2.weight": (1000, 1024), "fc.weight": (1000, 1024)}),
])
def test_classic_models_use_torchvisions_state_dict_names(name, options, count, samples):
  state = to_torchvision(name, zero_variables(name, num_classes=1000, **options))
  assert len(state) == count
  for key, shape in samples.items():
    assert state[key].shape == shape, key
  v = from_torchvision(name, state, **options)
  assert jax.tree.map(np.shape, v) == jax.tree.map(np.shape, zero_variables(name, **options))


def test_googlenet_aux_heads_are_optional_like_torchvisions_builder():
  state = to_torchvision("googlenet", zero_variables("googlenet", num_classes=3, aux_logits=True))
  v = from_torchvision("googlenet", state)  # the aux heads are dropped, as torchvision's builder does
  assert "aux1" not in v["params"]
  no_aux = to_torchvision("googlenet", v)
  with pytest.raises(ConversionError, match=r"missing key\(s\).*aux1\.conv\.bn\.running_mean"):
    from_torchvision("googlenet", no_aux, aux_logits=True)


def torch_alexnet(state, x):
  """Reference AlexNet with torch semantics: NCHW, OIHW weights, NCHW flatten."""
  w = {k: jnp.asarray(v) for k, v in state.items()}

  def conv(x, i, stride, pad):
    y = jax.lax.conv_general_dilated(x, w[f"features.{i}.weight"], (stride, stride),
                                     [(pad, pad)] * 2, dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return jax.nn.relu(y + w[f"features.{i}.bias"][None, :, None, None])

  pool = lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 3, 3), (1, 1, 2, 2), "VALID")
  x = pool(conv(x, 0, 4, 2))
  x = pool(conv(x, 3, 1, 2))
  x = pool(conv(conv(conv(x, 6, 1, 1), 8, 1, 1), 10, 1, 1))
  h = x.shape[2]  # adaptive average pool to 6x6: bins [floor(i*h/6), ceil((i+1)*h/6))
  bins = [(i * h // 6, -(-(i + 1) * h // 6)) for i in range(6)]
  x = jnp.stack([jnp.stack([x[:, :, a:b, c:d].mean((2, 3)) for c, d in bins], -1) for a, b in bins], -2)
  x = x.reshape(x.shape[0], -1)
  linear = lambda x, i: x @ w[f"classifier.{i}.weight"].T + w[f"classifier.{i}.bias"]
  return linear(jax.nn.relu(linear(jax.nn.relu(linear(x, 1)), 4)), 6)


def test_converted_alexnet_matches_a_torch_semantics_reference():
  # 79x79: the last feature map is 2x2, so the adaptive pool repeats cells as torch does.
  rs = np.random.default_rng(0)
  state = {k: (rs.standard_normal(v.shape, np.float32) / np.sqrt(np.prod(v.shape[1:]) or 1))
           for k, v in to_torchvision("alexnet", zero_variables("alexnet", num_classes=7)).items()}
  x = rs.standard_normal((2, 3, 79, 79), np.float32)
  model = create_model("alexnet", num_classes=7)
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(from_torchvision("alexnet", state),
                                                            x.transpose(0, 2, 3, 1))
  np.testing.assert_allclose(out, torch_alexnet(state, x), rtol=1e-4, atol=1e-5)


def test_safetensors_written_by_to_torchvision_load_back(tmp_path):
  v = from_torchvision("resnet18", RESNET18)
  save_file(to_torchvision("resnet18", v), str(tmp_path / "r18.safetensors"))
  jax.tree.map(np.testing.assert_array_equal, from_torchvision("resnet18", tmp_path / "r18.safetensors"), v)


def test_pth_files_without_torch_name_the_missing_package(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "torch", None)  # as in CI: torch is not installed
  (tmp_path / "r18.pth").write_bytes(b"")
  with pytest.raises(ImportError, match=r"reading r18\.pth needs torch .*\.safetensors files need "
                                        "no torch"):
    from_torchvision("resnet18", tmp_path / "r18.pth")


# Logits of torchvision's models (eval mode) on seeded weights and images, written by
# tests/fixtures/make_torchvision_fixtures.py with torch; the same weights are rebuilt here.
ZOO = np.load(pathlib.Path(__file__).parent / "fixtures" / "torchvision_zoo.npz")


@pytest.mark.parametrize("name,options", [
    ("alexnet", {}), ("vgg11_bn", {}), ("googlenet", {"transform_input": True}), ("resnet50", {})])
def test_outputs_match_torchvision(name, options):
  shapes = {k: ast.literal_eval(str(s)) for k, s in zip(ZOO[f"{name}/keys"], ZOO[f"{name}/shapes"])}
  ours = to_torchvision(name, zero_variables(name, num_classes=7, aux_logits=True)
                        if name == "googlenet" else zero_variables(name, num_classes=7))
  assert {k: v.shape for k, v in ours.items()} == shapes  # torchvision's names, shapes, order-free
  state = seeded_state_dict(shapes)
  v = from_torchvision(name, state, **options)  # googlenet: aux heads dropped
  model = create_model(name, num_classes=7, **options)
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
  sizes = sorted(int(k.rsplit("_", 1)[1]) for k in ZOO.files if k.startswith(f"{name}/logits_"))
  assert sizes
  for size in sizes:
    ref = ZOO[f"{name}/logits_{size}"]
    out = apply(v, seeded_images((2, 3, size, size)).transpose(0, 2, 3, 1))
    assert np.abs(ref).max() > 0.1  # not a degenerate (all-zero) network
    np.testing.assert_allclose(out, ref, atol=1e-4 * max(1.0, np.abs(ref).max()), rtol=1e-4)
