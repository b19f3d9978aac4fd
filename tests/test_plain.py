"""He et al.'s plain networks (`shortcut="none"`) and the identity construction: a deeper
ResNet whose extra blocks' last BatchNorm scales are zero computes the shallower one."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.models import create_model
from jaxvision.models.resnet import ResNet
from jaxvision.nn.residual import BasicBranch, ResidualBlock

from test_models import num_params


@pytest.mark.parametrize("name", ["cifar_resnet20", "cifar_resnet56"])
def test_plain_cifar_network_has_the_residual_ones_layers_and_parameters(name):
  residual = create_model(name, num_classes=10)
  plain = create_model(name, num_classes=10, shortcut="none")
  assert num_params(plain, 32) == num_params(residual, 32)  # option A: shortcuts hold nothing


def test_plain_imagenet_network_drops_only_the_projections():
  residual, plain = create_model("resnet18"), create_model("resnet18", shortcut="none")
  # Three transitions with a 1x1 projection + BN: 64->128, 128->256, 256->512.
  projections = sum(c_in * c_out + 2 * c_out for c_in, c_out in ((64, 128), (128, 256), (256, 512)))
  assert num_params(residual, 224) - num_params(plain, 224) == projections


def test_plain_block_is_relu_of_the_branch_alone():
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 4))
  norm = functools.partial(nn.BatchNorm, use_running_average=True)
  branch = functools.partial(BasicBranch, features=4, norm=norm)
  variables = ResidualBlock(branch=branch, out_features=4).init(jax.random.key(1), x, 1.0, False)
  variables = jax.tree.map(lambda a: a + 0.1, variables)  # non-trivial BN statistics
  g = branch().apply({k: v["branch"] for k, v in variables.items()}, x)
  for shortcut, expected in (("none", nn.relu(g)), ("identity", nn.relu(x + g))):
    y = ResidualBlock(branch=branch, out_features=4, shortcut=shortcut).apply(variables, x, 1.0, False)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_plain_network_refuses_stochastic_depth():
  model = create_model("cifar_resnet20", num_classes=10, shortcut="none", stochastic_depth=True)
  with pytest.raises(ValueError, match="stochastic_depth: needs a shortcut.*shortcut='none'"):
    model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False)


def _tiny(blocks: int, **kw) -> ResNet:
  return ResNet(stage_sizes=(blocks, blocks), widths=(4, 8), num_classes=3, stem="cifar",
                stem_width=4, **{"shortcut": "pad", **kw})


@pytest.mark.parametrize("train", [False, True])
def test_deeper_resnet_with_zeroed_extra_blocks_computes_the_shallower_one(train):
  """He et al.'s argument: extra residual blocks that are identities cannot make a deeper
  ResNet worse. Blocks whose branch ends in BatchNorm with scale 0 (and shift 0) are exactly the
  identity on the non-negative stage state, so ResNet-(n+k) computes ResNet-n."""
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
  shallow, deep = _tiny(2), _tiny(4)
  v_shallow = shallow.init(jax.random.key(1), x, train=False)
  v_shallow = jax.tree.map(lambda a: a + 0.05 * jnp.cos(jnp.arange(a.size).reshape(a.shape)),
                           v_shallow)  # non-trivial scales, shifts and statistics
  v_deep = deep.init(jax.random.key(2), x, train=False)
  v_deep = jax.tree.map(lambda a: a + 0.3, v_deep)  # the extra blocks' other weights: anything

  def extend(path, deep_leaf):
    keys = [getattr(k, "key", None) for k in path]
    shallow_leaf = v_shallow
    for k in keys:
      shallow_leaf = shallow_leaf[k]
    if "blocks" not in keys:  # stem, transitions, head: shared as they are
      return shallow_leaf
    n = shallow_leaf.shape[0]  # stacked blocks: the shallow ones first, then the extra ones
    extra = deep_leaf[n:]
    if keys[-2] == "bn2" and keys[-1] in ("scale", "bias"):
      extra = jnp.zeros_like(extra)  # the extra branches' last BatchNorm: zero
    return jnp.concatenate([shallow_leaf, extra])

  v_deep = jax.tree_util.tree_map_with_path(extend, v_deep)
  y_shallow = shallow.apply(v_shallow, x, train=train, mutable=["batch_stats"] if train else False)
  y_deep = deep.apply(v_deep, x, train=train, mutable=["batch_stats"] if train else False)
  if train:
    y_shallow, y_deep = y_shallow[0], y_deep[0]
  np.testing.assert_allclose(y_deep, y_shallow, rtol=1e-5, atol=1e-5)
  # A plain network cannot do this: its zeroed blocks output zeros, and so does all that follows.
  y_plain = _tiny(4, shortcut="none").apply(v_deep, x, train=False)
  assert np.allclose(y_plain, y_plain[:1]) and not np.allclose(y_plain, y_shallow, atol=1e-3)
