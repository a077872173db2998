"""camtl: multi-task learning for NLP on one pretrained Transformer encoder."""

from camtl.errors import CamtlError, ConfigError, DataError

__version__ = "0.1.0"

__all__ = ["CamtlError", "ConfigError", "DataError", "__version__"]
