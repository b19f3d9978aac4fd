"""Checkpoint parameter names: every detector's and segmenter's variable tree (paths and shapes of
params and batch_stats) is the one recorded in fixtures/param_trees.json, so old checkpoints and
converted torchvision weights keep loading. Regenerate (only for an intended change) with
`python tests/test_param_names.py`."""

import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from jaxvision.models import create_model

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "param_trees.json"
SIZE = 64
PROPOSALS = jnp.array([[[0.0, 0.0, 32.0, 32.0], [8.0, 16.0, 60.0, 40.0]]])
TINY_RESNET = dict(backbone="resnet", backbone_options=dict(
    stage_sizes=(1, 1), widths=(4, 8), stem="cifar", stem_width=4))

# name: (registry name, options, needs proposals)
CASES = {
    "faster_rcnn/resnet18": ("faster_rcnn", dict(backbone="resnet18"), False),
    "faster_rcnn/resnet50": ("faster_rcnn", dict(backbone="resnet50", rpn_width=32,
                                                 representation_size=16), False),
    "faster_rcnn/tiny_pool": ("faster_rcnn", dict(TINY_RESNET, roi_pool="pool",
                                                  representation_size=8), False),
    "fast_rcnn/resnet18": ("fast_rcnn", dict(backbone="resnet18"), False),
    "mask_rcnn/resnet18": ("mask_rcnn", dict(backbone="resnet18"), False),
    "rcnn/resnet18": ("rcnn", dict(backbone="resnet18", warp_size=32), True),
    "rcnn/window_cnn": ("rcnn", dict(backbone="window_cnn", warp_size=24,
                                     representation_size=8), True),
    "sppnet/resnet18": ("sppnet", dict(backbone="resnet18"), True),
    "yolov1/resnet18": ("yolov1", dict(backbone="resnet18"), False),
    "yolov2/resnet18": ("yolov2", dict(backbone="resnet18"), False),
    "yolov2/tiny": ("yolov2", dict(TINY_RESNET, head_width=8), False),
    "fcn32s/resnet18": ("fcn32s", dict(backbone="resnet18"), False),
    "fcn16s/resnet18": ("fcn16s", dict(backbone="resnet18"), False),
    "fcn8s/resnet18": ("fcn8s", dict(backbone="resnet18", learn_final_upsample=True), False),
    "fcn8s/unscanned": ("fcn8s", dict(backbone="resnet", backbone_options=dict(
        stage_sizes=(1, 1, 1, 1), widths=(4, 8, 16, 32), stem_width=4, scan=False)), False),
    "unet": ("unet", {}, False),
    "segnet": ("segnet", {}, False),
    "window_cnn": ("window_cnn", {}, False),
}


def param_tree(case: str, **overrides) -> dict[str, list[int]]:
  """{"collection/path/to/leaf": shape} of the model's initial variables (abstract: no compute)."""
  name, options, needs_proposals = CASES[case]
  model = create_model(name, num_classes=3, **{**options, **overrides})
  x = jnp.zeros((1, SIZE, SIZE, 3))
  kw = {"proposals": PROPOSALS} if needs_proposals else {}
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False, **kw))
  flat = jax.tree_util.tree_flatten_with_path(variables)[0]
  return {"/".join(k.key for k in path): list(leaf.shape) for path, leaf in flat}


def test_fixture_lists_every_case():
  assert sorted(json.loads(FIXTURE.read_text())) == sorted(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_param_tree_is_the_recorded_one(case):
  recorded = json.loads(FIXTURE.read_text())[case]
  tree = param_tree(case)
  assert sorted(set(tree) - set(recorded)) == [], "new variables"
  assert sorted(set(recorded) - set(tree)) == [], "missing variables"
  assert tree == recorded


@pytest.mark.parametrize("case", ["faster_rcnn/tiny_pool", "yolov2/tiny", "fcn8s/unscanned"])
def test_backbone_options_from_a_training_config(case):
  # A config's model.options.backbone_options is a ConfigDict: the one backbone helper takes it.
  options = ml_collections.ConfigDict(CASES[case][1]["backbone_options"])
  assert param_tree(case, backbone_options=options) == json.loads(FIXTURE.read_text())[case]


@pytest.mark.parametrize("name", ["faster_rcnn", "fast_rcnn", "rcnn", "sppnet", "yolov1",
                                  "fcn32s"])
def test_bad_backbone_options_are_named(name):
  with pytest.raises(ValueError, match=r"backbone_options: got \[4\]; expected a dict"):
    create_model(name, num_classes=3, backbone="resnet", backbone_options=[4])
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['depth'\]"):
    create_model(name, num_classes=3, backbone="resnet18", backbone_options={"depth": 3})


if __name__ == "__main__":
  FIXTURE.parent.mkdir(exist_ok=True)
  trees = {case: param_tree(case) for case in sorted(CASES)}
  lines = ",\n".join(
      f"  {json.dumps(case)}: {{\n" + ",\n".join(
          f"    {json.dumps(path)}: {json.dumps(shape)}" for path, shape in sorted(tree.items()))
      + "\n  }" for case, tree in trees.items())
  FIXTURE.write_text("{\n" + lines + "\n}\n")  # one leaf per line
  print(f"wrote {FIXTURE}: {len(trees)} trees, {sum(map(len, trees.values()))} leaves",
        file=sys.stderr)
