"""Single source of the sagellm-domestic-interconnect version (read by hatchling)."""

__version__ = "0.1.1"
