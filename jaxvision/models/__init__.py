"""Model zoo. `create_model(name, num_classes=..., **options)`; `list_models()`."""

from jaxvision.models.registry import create_model, list_models, model_options, register_model
from jaxvision.models import resnet  # noqa: F401  (registers the ResNet family)
from jaxvision.models import classic  # noqa: F401  (AlexNet, VGG, GoogLeNet)

__all__ = ["create_model", "list_models", "model_options", "register_model"]
