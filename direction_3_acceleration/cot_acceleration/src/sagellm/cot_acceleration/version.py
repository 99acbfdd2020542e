"""Single source of the sagellm-cot-acceleration version (read by hatchling)."""

__version__ = "0.1.0"
