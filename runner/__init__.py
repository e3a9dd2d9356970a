"""campaign-runner: declarative SMS campaigns."""

__version__ = "0.1.0"
