"""YOLOv1 (Redmon et al. 2016) on the procedural `shapes` detection data (64x64), offline on a
2-core CPU: the v1 grid head (S x S cells, B = 2 boxes of (x, y, sqrt w, sqrt h, confidence) and
C class scores per cell) and the v1 loss (responsible box by IoU, lambda_coord 5, lambda_noobj
0.5), on the backbone, data, optimizer and budget of yolo_shapes.py (YOLOv2), so that the two
heads compare on equal terms (docs/BENCHMARKS.md).
"""

from jaxvision.configs.yolo_shapes import get_config as yolov2_config


def get_config():
  c = yolov2_config()
  c.model.name = "yolov1"
  del c.model.options["anchors"]
  c.model.options.num_boxes = 2
  return c
