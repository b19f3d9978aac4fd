"""Models, ops, losses and training import without TensorFlow (GPU machines and Colab TPU
runtimes have none); only jaxvision.data may import it."""

import subprocess
import sys


def test_core_packages_do_not_import_tensorflow():
  code = ("import sys, jaxvision.models, jaxvision.nn.residual, jaxvision.losses, "
          "jaxvision.training.fit, jaxvision.training.parallel, jaxvision.plots.curves, "
          "jaxvision.analysis.detection_walk, jaxvision.analysis.lsda, "
          "jaxvision.analysis.sliding_window_shapes, jaxvision.analysis.proposal_recall; "
          "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets')]; "
          "print(bad); sys.exit(1 if bad else 0)")
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  assert r.returncode == 0, r.stdout + r.stderr
