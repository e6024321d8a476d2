"""swupd_server: turns root file system trees into signed, delta-efficient update content."""

__version__ = "0.1.0"
