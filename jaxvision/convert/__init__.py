"""Weights from torchvision (safetensors without torch; .pth with torch) and back."""

from jaxvision.convert.torchvision import (ConversionError, backbone_from_torchvision,
                                           convertible_models, from_torchvision, read_state_dict,
                                           to_torchvision)

__all__ = ["ConversionError", "backbone_from_torchvision", "convertible_models",
           "from_torchvision", "read_state_dict", "to_torchvision"]
