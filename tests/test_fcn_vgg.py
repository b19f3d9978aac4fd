"""FCN-32s/16s/8s on VGG-16 (Long et al. 2015): fc6 a 7x7 convolution and fc7 a 1x1 over pool5
with VGG's own classifier parameters, skips from pool4 and pool3; torchvision VGG-16 weights load
into the backbone (fc6 equal to the classifier's on a 224x224 image), and the parameter count is
that of Long et al.'s caffe models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.convert import to_torchvision
from jaxvision.convert.torchvision import backbone_from_torchvision, from_torchvision
from jaxvision.models import create_model
from jaxvision.models.classic import VGG
from jaxvision.models.fcn import FCN
from jaxvision.training.finetune import OUTSIDE_BACKBONE, with_pretrained

from fixtures.seeded_state_dict import seeded_state_dict


def abstract_init(model, size=224, **kw):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)),
                                           train=False, **kw))


def num_params(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


# Parameters of shelhamer/fcn.berkeleyvision.org's voc-fcn{32,16,8}s (21 classes): VGG-16's 13
# convolutions (14,714,688), fc6 7x7 (102,764,544) and fc7 1x1 (16,781,312) convolutions, the
# 1x1 score layers and the bias-free deconvolutions (upscore2 / upscore_pool4 4x4, the final one
# 64x64, 32x32 or 16x16; caffe stores the final one although it is fixed).
LONG_ET_AL = {32: 136_152_917, 16: 134_815_994, 8: 134_489_759}
FINAL_UPSAMPLE = {32: 64 * 64 * 21 * 21, 16: 32 * 32 * 21 * 21, 8: 16 * 16 * 21 * 21}


@pytest.mark.parametrize("variant", [32, 16, 8])
def test_parameter_count_is_long_et_als(variant):
  learned = abstract_init(create_model(f"fcn{variant}s", num_classes=21, backbone="vgg16",
                                       learn_final_upsample=True))
  assert num_params(learned["params"]) == LONG_ET_AL[variant]
  fixed = abstract_init(create_model(f"fcn{variant}s", num_classes=21, backbone="vgg16"))
  assert num_params(fixed["params"]) == LONG_ET_AL[variant] - FINAL_UPSAMPLE[variant]


@pytest.mark.parametrize("backbone", ["vgg16", "vgg16_bn"])
def test_fcn8s_on_vgg16_is_long_et_als_layout(backbone):
  model = create_model("fcn8s", num_classes=21, backbone=backbone)
  v = abstract_init(model)
  params = v["params"]
  assert sorted(params) == ["backbone", "score_fr", "score_pool3", "score_pool4", "upscore2",
                            "upscore_pool4"]
  assert params["score_fr"]["kernel"].shape == (1, 1, 4096, 21)     # on fc7
  assert params["score_pool4"]["kernel"].shape == (1, 1, 512, 21)   # on pool4
  assert params["score_pool3"]["kernel"].shape == (1, 1, 256, 21)   # on pool3
  # The backbone is the VGG classifier less fc8: fc6 / fc7 keep their Linear parameters.
  classifier = abstract_init(create_model(backbone, num_classes=1000))
  want = {k: w for k, w in classifier["params"].items() if k != "classifier_6"}
  assert jax.tree.map(jnp.shape, params["backbone"]) == jax.tree.map(jnp.shape, want)
  maps = jax.eval_shape(lambda v: model.backbone.apply(
      {c: t["backbone"] for c, t in v.items()}, jnp.zeros((1, 224, 224, 3)), train=False,
      features=True), v)
  assert [m.shape[1:] for m in maps[-3:]] == [(7, 7, 512), (7, 7, 4096), (7, 7, 4096)]
  out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, 224, 320, 3)), train=False), v)
  assert out.shape == (1, 224, 320, 21)


def test_torchvision_vgg16_weights_load_and_fc6_is_the_classifiers():
  # A torchvision-layout VGG-16 state_dict with random numbers; fc6/fc7 only 16 wide to stay small.
  width = 16
  shapes = to_torchvision("vgg16", jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract_init(
      create_model("vgg16", num_classes=21, classifier_width=width))))
  state = seeded_state_dict({k: a.shape for k, a in shapes.items()})
  assert state["classifier.0.weight"].shape == (width, 25088)
  loaded = backbone_from_torchvision("vgg16", state, classifier_width=width)
  assert "classifier_6" not in loaded["params"]["backbone"]

  fcn = create_model("fcn8s", num_classes=21, backbone="vgg16",
                     backbone_options=dict(classifier_width=width))
  fresh = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract_init(fcn))
  # The training loop's loader (model.pretrained) takes exactly this tree: no key missing or left.
  variables = with_pretrained(fresh, loaded, OUTSIDE_BACKBONE)
  variables = {"params": variables["params"]}  # VGG-16 has no batch_stats

  classifier = create_model("vgg16", num_classes=21, classifier_width=width)
  x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 224, 224, 3), np.float32))
  fc6 = lambda mdl, _: mdl.name == "classifier_0"

  @jax.jit
  def run(variables, clf_variables, x):
    out, fcn_state = fcn.apply(variables, x, train=False, capture_intermediates=fc6,
                               mutable=["intermediates"])
    _, clf_state = classifier.apply(clf_variables, x, train=False, capture_intermediates=fc6,
                                    mutable=["intermediates"])
    return (out, fcn_state["intermediates"]["backbone"]["classifier_0"]["__call__"][0],
            clf_state["intermediates"]["classifier_0"]["__call__"][0])

  out, fcn_fc6, clf_fc6 = run(variables, from_torchvision("vgg16", state, classifier_width=width), x)
  assert out.shape == (1, 224, 224, 21) and fcn_fc6.shape == (1, 7, 7, width)
  # The 7x7 window of the centre cell is the whole 7x7 pool5 map: the classifier's fc6.
  np.testing.assert_allclose(fcn_fc6[:, 3, 3], clf_fc6, rtol=1e-4, atol=1e-4)
  assert not np.allclose(fcn_fc6[:, 0, 0], clf_fc6, rtol=1e-4, atol=1e-4)  # a border cell: padding


def test_fcn_on_a_tiny_vgg_runs_in_training_with_dropout():
  vgg = VGG(layers=(4, "M", 4, "M", 4, "M", 4, "M", 4, "M"), num_classes=3, classifier_width=4)
  model = FCN(backbone=vgg, num_classes=3, variant=8)
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  rng = np.random.default_rng(0)
  v = jax.tree.map(lambda s: rng.standard_normal(s.shape, np.float32), abstract_init(model, 32))
  apply = jax.jit(lambda v, x, r: model.apply(v, x, train=True, rngs={"dropout": r}))
  a, b = apply(v, x, jax.random.key(2)), apply(v, x, jax.random.key(3))
  assert a.shape == (2, 32, 32, 3) and np.isfinite(a).all()
  assert not np.allclose(a, b)  # fc6 / fc7 dropout (Long et al.'s drop6 / drop7) is on
