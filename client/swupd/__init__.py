"""swupd: the device side of meta-swupd."""

__version__ = "0.1.0"
