"""Single source of the sagellm-engines version (read by hatchling)."""

__version__ = "0.18.0"
