"""The package version (one place; the package metadata and model files read it)."""

__version__ = "0.2.0"
