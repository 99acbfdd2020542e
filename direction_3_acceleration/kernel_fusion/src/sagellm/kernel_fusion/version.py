"""Single source of the sagellm-kernel-fusion version (read by hatchling)."""

__version__ = "0.2.0"
