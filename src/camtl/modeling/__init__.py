"""The multi-task model: a shared pretrained encoder and one head per task."""

from camtl.modeling.model import MultiTaskModel, MultiTaskOutput

__all__ = ["MultiTaskModel", "MultiTaskOutput"]
