"""Fine-tuning offline: a CIFAR ResNet-20 trained on digits (the demo config, in runs/resnet20_digits)
with a new head, its backbone at a tenth of the learning rate and BatchNorm frozen.

  jaxvision-train --config demo --workdir runs/resnet20_digits   # pretrains
  jaxvision-train --config finetune_digits --workdir runs/finetune_digits

Variants (results in docs/TRANSFER_LEARNING.md): `--config.finetune.backbone_lr_scale=0` trains
the head only (a linear probe); `--config.dataset.image_size=16` fine-tunes at twice the
resolution; `--config.model.pretrained=FILE.safetensors` with a torchvision model name starts
from torchvision weights.
"""

from jaxvision.training.config import default_config


def get_config():
  c = default_config()
  c.model.name = "cifar_resnet20"
  c.model.pretrained = "runs/resnet20_digits"
  c.finetune.backbone_lr_scale = 0.1
  c.finetune.freeze_batch_norm = True
  c.dataset.name = "digits"
  c.batch_size = 64
  c.num_epochs = 3.0
  c.optimizer.learning_rate = 0.05
  c.optimizer.warmup_epochs = 0.0
  return c
