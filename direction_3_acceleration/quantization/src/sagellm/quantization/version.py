"""Single source of the sagellm-quantization version (read by hatchling)."""

__version__ = "0.3.1"
