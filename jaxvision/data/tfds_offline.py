"""Side effects only: TFDS never touches the network; TensorFlow stays quiet and off the GPU.

Imported first by `jaxvision.data`, so it runs before any builder is constructed.
"""

import os

# Only take effect if TensorFlow has not been imported yet. oneDNN matters for
# convolutions, not for the input pipeline; switching it off also stops its banner.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import tensorflow as tf  # noqa: E402
from tensorflow_datasets.core.utils import gcs_utils  # noqa: E402

# Every TFDS look-up on gs://tfds-data (dataset info, prepared datasets, downloads)
# checks this flag first; with it set nothing waits on a network that may not answer.
gcs_utils._is_gcs_disabled = True  # pylint: disable=protected-access

tf.get_logger().setLevel("ERROR")

try:
  # JAX owns the accelerators; TF only feeds the input pipeline on the host CPU.
  tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # TF already initialised its devices (someone used it earlier).
  pass
