"""The package's version, in a module of its own: ``setup.cfg``, the CLI and the batch report
read it without importing the public API."""

__version__ = "0.1.0"
