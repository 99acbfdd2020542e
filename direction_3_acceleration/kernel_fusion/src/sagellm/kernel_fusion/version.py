"""Single source of the sagellm-kernel-fusion version (read by hatchling)."""

__version__ = "0.4.1"
