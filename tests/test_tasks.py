"""The task contract (jaxvision.training.task): the abstract base, its defaults and hooks as the
steps use them, the registry, and that each task's eval metric names cover its results."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvision.models import create_model
from jaxvision.training import steps, tasks
from jaxvision.training.config import default_config
from jaxvision.training.task import SumAccumulator, Task
from jaxvision.training.tasks import (Classification, Detection, MultiLabelClassification,
                                      RCNNDetection, Segmentation, make_task, register_task,
                                      task_names)
from jaxvision.training.train_state import create_train_state


class Noisy(nn.Module):
  """Needs a "noise" rng in training and a `shift` keyword: only a task that declares both
  (rng_streams, model_kwargs) can train it."""

  @nn.compact
  def __call__(self, x, *, train: bool, shift=0.0):
    logits = nn.Dense(2)(x.reshape(x.shape[0], -1)) + shift
    if train:
      logits = logits + 0.0 * jax.random.normal(self.make_rng("noise"), logits.shape)
    return logits


class ShiftedClassification(Classification):
  rng_streams = ("noise",)

  def model_kwargs(self, batch, *, train):
    return {"shift": batch["shift"]} if train else {}


def test_a_task_must_implement_the_contract():
  class Partial(Task):
    def loss(self, outputs, batch):
      return 0.0, {}

  with pytest.raises(TypeError, match="abstract"):
    Partial()
  with pytest.raises(ValueError, match=r"Bad.eval_reduce: got 'mean'; expected one of"):
    type("Bad", (Classification,), {"eval_reduce": "mean"})


def test_default_hooks():
  task = Classification()
  assert task.model_kwargs({"image": None}, train=True) == {}
  assert task.check_model(object()) is None
  assert task.on_train_end(None, None, None) is None
  assert task.rng_streams == () and task.eval_reduce == "sum"


def test_steps_use_the_tasks_rng_streams_and_model_kwargs():
  state = create_train_state(Noisy(), optax.sgd(0.0), jax.random.key(0), (2, 2, 1))
  batch = {"image": np.ones((4, 2, 2, 1), np.float32), "label": np.zeros(4, np.int32),
           "shift": np.array([100.0, 0.0], np.float32)}
  with pytest.raises(Exception, match="noise"):  # plain classification has no "noise" rng
    steps.make_train_step(Classification())(state, batch, jax.random.key(0))
  task = ShiftedClassification()
  _, train = steps.make_train_step(task)(state, batch, jax.random.key(0))
  plain = task.summarize(steps.make_eval_step(task)(state, batch))
  # In training the shift (+100 on class 0, every label 0) makes the loss vanish; not in eval.
  assert float(train["loss"]) < 1e-6 < 0.1 < plain["loss"]
  with pytest.raises(TypeError, match="task: got dict; expected a jaxvision.training.task.Task"):
    steps.make_train_step({"loss": None})


def config_for(task: str, dataset: str = "digits", **kw):
  c = default_config()
  c.task, c.dataset.name = task, dataset
  c.update(kw)
  return c


def test_make_task_builds_every_registered_task_around_the_given_model():
  assert task_names() == sorted(["classification", "multilabel_classification", "segmentation",
                                 "detection", "rcnn_detection", "instance_segmentation"])
  task = make_task(config_for("classification", label_smoothing=0.1))
  assert isinstance(task, Classification) and task.label_smoothing == 0.1
  yolo = create_model("yolov1", num_classes=3)
  task = make_task(config_for("detection", "shapes_detection/64"), yolo)
  assert type(task) is Detection and task.model is yolo and task.num_classes == 3
  with pytest.raises(ValueError, match="model: the detection task needs a YOLO model"):
    make_task(config_for("detection", "shapes_detection/64"), None)
  with pytest.raises(ValueError, match="model: the rcnn_detection task needs an R-CNN model"):
    make_task(config_for("rcnn_detection", "shapes_detection/64"), yolo)
  assert issubclass(RCNNDetection, Detection)
  fcn = create_model("fcn32s", num_classes=4)
  task = make_task(config_for("segmentation"), fcn)
  assert isinstance(task, Segmentation) and "iou_3" in task.eval_metric_names


def test_registry_errors(monkeypatch):
  monkeypatch.setattr(tasks, "_TASKS", dict(tasks._TASKS))  # registrations here are undone
  with pytest.raises(ValueError, match="config.task: unknown task 'ocr'; expected one of"):
    make_task(config_for("ocr"))
  with pytest.raises(ValueError, match="name: task 'segmentation' is already registered"):
    register_task("segmentation", Segmentation.from_config)
  name = "test_tasks_not_a_task"
  register_task(name, lambda config, model: object())
  with pytest.raises(TypeError, match=f"config.task: the factory of '{name}' returned object; "
                                      "expected a jaxvision.training.task.Task"):
    make_task(config_for(name))


def results(task, outputs_list):
  acc = task.accumulator()
  for out in outputs_list:
    acc.add(out)
  return acc.result()


def test_eval_metric_names_cover_the_results():
  logits = jnp.array([[2.0, -1.0, 0.5], [0.1, 0.3, -2.0]])
  cls = Classification()
  r = results(cls, [cls.eval_outputs(logits, {"label": jnp.array([0, 2])})])
  assert set(r) == set(cls.eval_metric_names) and r["accuracy"] == 0.5

  seg = Segmentation(num_classes=3)
  seg_logits = jnp.tile(logits[:, None, None, :], (1, 2, 2, 1))
  mask = jnp.array([[[0, 2], [1, 255]], [[1, 1], [2, 0]]])
  r = results(seg, [seg.eval_outputs(seg_logits, {"mask": mask})])
  assert set(r) <= set(seg.eval_metric_names) and {"miou", "iou_0"} <= set(r)

  ml = MultiLabelClassification(3)
  out = ml.eval_outputs(logits, {"labels": jnp.array([[1, 0, 1], [0, 1, 0]], jnp.float32)})
  r = results(ml, [out])
  assert set(r) == set(ml.eval_metric_names)

  det = Detection(create_model("yolov1", num_classes=3), 3, coco=False)
  assert {"map_voc07", "ap_voc12_2"} <= set(det.eval_metric_names)
  assert not any(n.startswith("coco_") for n in det.eval_metric_names)


def test_sum_accumulator_adds_in_64_bits():
  acc = SumAccumulator(lambda sums: {"pixels": float(sums["pixels"])})
  for _ in range(3):
    acc.add({"pixels": np.int32(2**30)})  # int32 would overflow at the second add
  assert acc.result() == {"pixels": 3 * 2**30}


def test_best_metric_must_be_an_eval_metric_of_the_task():
  from jaxvision.training.run import check_best_metric
  check_best_metric(config_for("classification"), Classification())
  c = config_for("classification", best_metric="miou")
  with pytest.raises(ValueError, match=r"config.best_metric: got 'miou'; expected one of the "
                                       r"'classification' task's eval metrics \['loss', "
                                       r"'accuracy'\]"):
    check_best_metric(c, Classification())
  check_best_metric(config_for("segmentation", best_metric="miou"), Segmentation())


def test_the_training_core_does_not_probe_tasks():
  import inspect

  from jaxvision.training import fit, run
  for module in (fit, run, steps):
    source = inspect.getsource(module)
    assert "hasattr(task" not in source and "getattr(task" not in source, module.__name__
