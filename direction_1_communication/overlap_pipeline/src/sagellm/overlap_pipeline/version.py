"""Single source of the sagellm-overlap-pipeline version (read by hatchling)."""

__version__ = "0.1.1"
