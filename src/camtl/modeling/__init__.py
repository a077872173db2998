"""The multi-task model: a shared pretrained encoder and one head per task."""

from camtl.modeling import conditional_encoder  # noqa: F401  (registers "camtl")
from camtl.modeling.model import MultiTaskModel, MultiTaskOutput

__all__ = ["MultiTaskModel", "MultiTaskOutput"]
