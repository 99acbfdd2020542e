"""Single source of the sagellm-topology version (read by hatchling)."""

__version__ = "0.1.0"
