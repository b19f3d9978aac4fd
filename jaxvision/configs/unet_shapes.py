"""U-Net with residual levels on `shapes/64`, offline, in under 10 minutes on 2 CPU cores.

  jaxvision-train --config unet_shapes --workdir runs/unet_shapes
"""

from jaxvision.configs import fcn_shapes


def get_config():
  c = fcn_shapes.get_config()  # same data, batch, optimizer and metric
  c.model.name = "unet"
  c.model.options = dict(widths=(16, 32, 64, 128))
  c.num_epochs = 2.0
  return c
