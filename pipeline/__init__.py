"""Configuration, the threaded runner and the command line."""

__version__ = "0.1.0"
