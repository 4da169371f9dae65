"""The command line: `semcollab ...`, a thin layer over the Python API."""

from .core import app, main

__all__ = ["app", "main"]
