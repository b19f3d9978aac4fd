"""The task registry: `config.task` names the task (jaxvision.training.task.Task) a run trains.

Built in: classification, multilabel_classification, segmentation, detection (YOLO) and
rcnn_detection (the R-CNN family), instance_segmentation (Mask R-CNN). New tasks register a factory `(config, model) -> Task` with
`register_task`; `make_task(config, model)` builds the named one around the model the run built.
"""

from __future__ import annotations

from typing import Callable

from jaxvision.training.classification_task import Classification
from jaxvision.training.detection_task import Detection
from jaxvision.training.mask_rcnn_task import InstanceSegmentation
from jaxvision.training.multilabel_task import MultiLabelClassification
from jaxvision.training.rcnn_task import RCNNDetection
from jaxvision.training.segmentation_task import Segmentation
from jaxvision.training.task import Task

__all__ = ["Classification", "Detection", "InstanceSegmentation", "MultiLabelClassification",
           "RCNNDetection", "Segmentation", "Task", "make_task", "register_task", "task_names"]

_TASKS: dict[str, Callable[..., Task]] = {
    "classification": Classification.from_config,
    "multilabel_classification": MultiLabelClassification.from_config,
    "segmentation": Segmentation.from_config,
    "detection": Detection.from_config,
    "rcnn_detection": RCNNDetection.from_config,
    "instance_segmentation": InstanceSegmentation.from_config,
}


def register_task(name: str, factory: Callable[..., Task]) -> None:
  """Registers `factory(config, model) -> Task` under `name` (a value of `config.task`)."""
  if name in _TASKS:
    raise ValueError(f"name: task {name!r} is already registered")
  _TASKS[name] = factory


def task_names() -> list[str]:
  """The values `config.task` accepts, sorted."""
  return sorted(_TASKS)


def make_task(config, model=None) -> Task:
  """The task named by `config.task`, built from the config around `model` (the model the run
  built; a task that needs it, such as detection, raises without it)."""
  if config.task not in _TASKS:
    raise ValueError(f"config.task: unknown task {config.task!r}; expected one of {task_names()}")
  task = _TASKS[config.task](config, model)
  if not isinstance(task, Task):
    raise TypeError(f"config.task: the factory of {config.task!r} returned "
                    f"{type(task).__name__}; expected a jaxvision.training.task.Task")
  return task
