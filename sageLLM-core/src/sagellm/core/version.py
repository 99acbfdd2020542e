"""Single source of the sagellm-core version (read by hatchling)."""

__version__ = "0.15.0"
