"""Model zoo. `create_model(name, num_classes=..., **options)`; `list_models()`."""

from jaxvision.models.registry import create_model, list_models, model_options, register_model
from jaxvision.models import resnet  # noqa: F401  (registers the ResNet family)
from jaxvision.models import odenet  # noqa: F401  (ODE-Net, ODE-ResNet)
from jaxvision.models import classic  # noqa: F401  (AlexNet, VGG, GoogLeNet)
from jaxvision.models import fcn, full_resolution_fcn, segnet, unet  # noqa: F401  (segmentation)
from jaxvision.models import yolo  # noqa: F401  (YOLOv1, YOLOv2)
from jaxvision.models import faster_rcnn  # noqa: F401  (Faster R-CNN, Fast R-CNN)
from jaxvision.models import mask_rcnn  # noqa: F401  (Mask R-CNN)
from jaxvision.models import rcnn, sppnet  # noqa: F401  (R-CNN, SPP-net)
from jaxvision.models import window_cnn  # noqa: F401  (unpadded CNN for sliding windows)
from jaxvision.models.fully_convolutional import fully_convolutional

__all__ = ["create_model", "fully_convolutional", "list_models", "model_options", "register_model"]
