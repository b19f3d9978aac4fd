"""SegNet-style encoder-decoder (max-pool indices reused by max-unpooling) on `shapes/64`, offline.

  jaxvision-train --config segnet_shapes --workdir runs/segnet_shapes
"""

from jaxvision.configs import fcn_shapes


def get_config():
  c = fcn_shapes.get_config()  # same data, batch, optimizer, epochs and metric
  c.model.name = "segnet"
  c.model.options = dict(widths=(16, 32, 64, 128))
  return c
